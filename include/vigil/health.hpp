// Health probes of the child: grpc.health.v1.Health/Check, results kept apart by kind.
//
// Threading: probe() is called on the loop thread; the gRPC reply arrives on a gRPC
// thread and is posted back into the io_context, so the callback always runs on the loop.
// Several calls may be out at once (ProbeScheduler starts one per interval); the scheduler
// recognises a stale reply by the sequence number it gave the probe.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace grpc {
class Channel;
}

namespace vigil {

enum class HealthResult {
    serving,
    not_serving,
    unknown,            // the child answered UNKNOWN
    service_unknown,    // the child does not know the configured service name
    deadline_exceeded,  // no answer within [health] timeout: hung or overloaded
    connection_refused, // nothing accepts on the address (not up yet, or gone)
    unavailable,        // gRPC UNAVAILABLE for another reason (e.g. a name that does not
                        // resolve): the message says which
    error,              // any other RPC failure
};
std::string_view to_string(HealthResult r);

struct HealthOutcome {
    HealthResult result = HealthResult::error;
    std::string detail; // the RPC's message, for the log

    bool healthy() const { return result == HealthResult::serving; }
    // "NOT_SERVING", "deadline exceeded (3s)", "connection refused: ..."
    std::string describe() const;
};

// The seam the supervisor talks to; tests may substitute a fake.
class HealthProber {
public:
    using Callback = std::function<void(const HealthOutcome&)>;
    virtual ~HealthProber() = default;
    // A new child incarnation: forget the old connection, open a new one.
    virtual void reset() = 0;
    // One Check, with the configured timeout as its deadline; `cb` runs on the loop thread
    // exactly once (also if the prober is reset). Calls may overlap.
    virtual void probe(Callback cb) = 0;
    // vigild is exiting: end what is pending on the loop (sockets, timers, commands), so
    // the loop runs out of work. The callbacks of what is cut short may still run.
    virtual void shutdown() {}
};

class GrpcHealthProber final : public HealthProber {
public:
    GrpcHealthProber(asio::io_context& io, const HealthConfig& config);
    // Cancels the calls in flight and waits for their gRPC callbacks, so none can post
    // into an io_context that is gone.
    ~GrpcHealthProber() override;

    void reset() override;
    void probe(Callback cb) override;
    // Takes new address/service/timeout; the next reset() opens a channel to them.
    void configure(const HealthConfig& config);

private:
    struct Call;

    asio::io_context& io_;
    HealthConfig config_;
    std::shared_ptr<grpc::Channel> channel_;
    std::mutex mu_;
    std::condition_variable idle_;
    std::vector<std::weak_ptr<Call>> in_flight_;
    int pending_ = 0;
};

} // namespace vigil
