// Health probes of the child: grpc.health.v1.Health/Check, results kept apart by kind.
//
// GrpcHealthProber speaks gRPC-over-HTTP/2 itself (libnghttp2 frames, an asio socket, the
// two one-field messages written by hand: grpc_wire.hpp) on the loop thread: no gRPC
// threads, no library threads at all. One HTTP/2 connection per child incarnation, opened
// by the first probe and reused; each probe is a stream with its own deadline. Several
// calls may be out at once (ProbeScheduler starts one per interval); the scheduler
// recognises a stale reply by the sequence number it gave the probe.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
    // Closes its connections; the callbacks of calls in flight never run after this.
    ~GrpcHealthProber() override;

    // Drops the connection (its calls in flight end as "unavailable"); the next probe
    // opens a new one.
    void reset() override;
    void probe(Callback cb) override;
    // Closes every connection and timer; the calls cut short end as "unavailable".
    void shutdown() override;
    // Takes new address/service/timeout; the next reset() connects to them.
    void configure(const HealthConfig& config);

    class Connection; // one HTTP/2 connection and its streams (health.cpp)

private:
    asio::io_context& io_;
    HealthConfig config_;
    std::shared_ptr<Connection> conn_;
    // Connections left by a GOAWAY or a hung peer, still ending their calls.
    std::vector<std::weak_ptr<Connection>> retired_;
    // False once the prober is gone: a callback already posted is then dropped.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace vigil
