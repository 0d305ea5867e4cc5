// Health probes other than gRPC's (DESIGN.md "Health kinds"): http (GET, 200-399 is
// healthy), tcp (a connection is accepted), exec (a command exits 0 within the timeout).
// Each probe is an operation of its own with its own deadline, so probes overlap as the
// ProbeScheduler asks; the callback runs once, on the loop, whatever happens.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/health.hpp"
#include "vigil/result.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace vigil {

class Reaper;

// The prober for `config.kind` (grpc, http, tcp, exec); nullptr for none. `reaper` reaps
// the commands of kind exec.
std::unique_ptr<HealthProber> make_prober(asio::io_context& io, Reaper& reaper,
                                          const HealthConfig& config);

// What a prober's operations in flight share: a way to end them all at shutdown.
class ProbeOps {
public:
    void add(std::weak_ptr<void> op, std::function<void()> cancel);
    void cancel_all();

private:
    std::vector<std::pair<std::weak_ptr<void>, std::function<void()>>> ops_;
};

class TcpHealthProber final : public HealthProber {
public:
    TcpHealthProber(asio::io_context& io, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;
    void shutdown() override { ops_.cancel_all(); }

private:
    asio::io_context& io_;
    HealthConfig config_;
    ProbeOps ops_;
};

class HttpHealthProber final : public HealthProber {
public:
    HttpHealthProber(asio::io_context& io, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;
    void shutdown() override { ops_.cancel_all(); }

private:
    asio::io_context& io_;
    HealthConfig config_;
    ProbeOps ops_;
};

// kind "notify": the child reports itself over sd_notify (READY=1, STATUS=, WATCHDOG=1)
// to a datagram socket of its own, in the abstract namespace (no file the child's user
// would need to reach in the 0700 state dir). Only the child's uid (or root) is heard.
// A check is answered at once from what the child said: not ready yet, ready, or ready
// but its watchdog ping is overdue.
class NotifyProber final : public HealthProber {
public:
    // `name` without the leading '@' (unique per vigild instance, stable across restarts
    // so an adopted child still reaches it).
    NotifyProber(asio::io_context& io, const HealthConfig& config, std::string name);
    ~NotifyProber() override;
    Status open();
    // NOTIFY_SOCKET for the child: "@name".
    std::string socket_env() const { return "@" + name_; }
    // A new child (or an adopted one, taken as ready: it told the previous vigild).
    void new_child(bool adopted, uid_t uid);
    // READY=1 arrived: the caller may probe at once.
    void set_on_ready(std::function<void()> f) { on_ready_ = std::move(f); }
    const std::string& status_text() const { return status_; }
    void reset() override {}
    void probe(Callback cb) override;
    void shutdown() override; // closes the socket

private:
    void start_receive();
    void on_message(std::string_view msg);

    asio::io_context& io_;
    HealthConfig config_;
    std::string name_;
    std::optional<asio::posix::stream_descriptor> socket_;
    uid_t uid_ = 0;
    bool ready_ = false;
    bool watchdog_seen_ = false;
    std::optional<std::chrono::steady_clock::time_point> last_ping_;
    std::string status_;
    std::function<void()> on_ready_;
};

class ExecHealthProber final : public HealthProber {
public:
    ExecHealthProber(asio::io_context& io, Reaper& reaper, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;
    void shutdown() override { ops_.cancel_all(); }

private:
    asio::io_context& io_;
    Reaper& reaper_;
    HealthConfig config_;
    ProbeOps ops_;
};

} // namespace vigil
