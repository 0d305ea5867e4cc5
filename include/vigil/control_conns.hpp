// The connections of vigild's control socket, watched and bounded.
//
// vigild accepts every connection itself (control_server.cpp) and hands it to gRPC with
// grpc::AddInsecureChannelFromFd, which owns the fd from then on. To see the connection
// end and to end it, vigild keeps a duplicate of that fd: the duplicate sits in an epoll
// set (EPOLLRDHUP: the peer left, EPOLLHUP: gRPC shut it) and shutdown(2) on it ends the
// connection for gRPC too (gRPC reads EOF, then closes its fd). Closing the duplicate
// alone would not.
//
// Which connection is served, answered with an error, or closed at once is conn_limits'
// admit(); this class applies it, counts, closes idle and rejected connections in time,
// and logs at a bounded rate.
//
// Threading: everything runs on the loop thread except CallLedger, which gRPC threads use
// to say that a call started or ended on a connection.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/conn_limits.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <sys/socket.h>
#include <unordered_map>

namespace vigil {

// Calls open per connection. gRPC names a connection made from an fd "fd:N" (its peer
// string), so a call finds its connection by that name when it starts and keeps the
// connection's id until it ends (the fd number may be reused by then; the id is not).
class CallLedger {
public:
    using Id = std::uint64_t;
    struct Activity {
        std::size_t open_calls = 0;
        std::uint64_t calls_total = 0;
        Clock::time_point last_change;
    };

    // Any thread: a call started on the connection gRPC calls `peer`; the id to pass to
    // call_ended(), 0 when the connection is not (or no longer) tracked.
    Id call_started(std::string_view peer);
    // Any thread. Runs the ended hook (outside the lock) for a tracked connection.
    void call_ended(Id id);
    // Set once before any connection is tracked: runs on the gRPC thread that ended a call.
    void set_ended_hook(std::function<void(Id)> hook);

    // Loop thread.
    void add(int grpc_fd, Id id, Clock::time_point now);
    void remove(Id id, int grpc_fd);
    std::optional<Activity> activity(Id id);

private:
    std::mutex mu_;
    std::unordered_map<int, Id> by_fd_;         // guarded by mu_
    std::unordered_map<Id, Activity> activity_; // guarded by mu_
    std::function<void(Id)> ended_hook_;        // set before use, then read only
};

class ControlConnections {
public:
    // Where a connection goes: the served API, or one of the servers that only answer
    // with an error. `hand_over` gives gRPC the fd (it owns it from then on).
    enum class Route { serve, deny, busy };
    using HandOver = std::function<void(Route, int fd)>;

    struct Peer {
        uid_t uid;
        pid_t pid;
        bool allowed;    // may use the API
        bool privileged; // root or vigild's own uid
    };

    struct Stats {
        std::size_t served = 0;   // open now
        std::size_t rejected = 0; // open now, being answered
        std::uint64_t closed_at_accept = 0;
        std::uint64_t closed_idle = 0;
        std::uint64_t closed_rejected = 0; // rejected connections vigild ended
        std::uint64_t shed = 0;            // accepted with the spare fd at EMFILE, closed
    };

    ControlConnections(asio::io_context& io, ConnectionLimits limits, HandOver hand_over);
    ~ControlConnections();
    ControlConnections(const ControlConnections&) = delete;
    ControlConnections& operator=(const ControlConnections&) = delete;

    // Loop thread: creates the epoll set. Before any take().
    Status start();
    // Loop thread: decides, logs (rate-limited) and routes an accepted connection.
    void take(UniqueFd fd, const Peer& peer);
    // Loop thread: an accept(2) failure, logged at a bounded rate. `shed`: the pending
    // connection was accepted and closed with the spare fd.
    void note_accept_error(int err, bool shed);
    // Loop thread: stops watching; gRPC keeps (and closes) its own fds. Idempotent.
    void close_all();

    const ConnectionLimits& limits() const { return limits_; }
    Stats stats() const { return stats_; }
    std::shared_ptr<CallLedger> ledger() const { return ledger_; }

private:
    struct Conn {
        UniqueFd watch; // our duplicate
        int grpc_fd;
        uid_t uid;
        Route route;
        Clock::time_point since;
    };

    void start_watch();
    void on_watch_ready();
    void release(CallLedger::Id id);
    void end(CallLedger::Id id, const char* why);
    void on_call_ended(CallLedger::Id id);
    void arm_sweep();
    void sweep();
    void log_first(const std::string& key, const std::string& line);
    void arm_log_timer();
    void log_summaries(const std::vector<LogThrottle::Summary>& summaries,
                       const std::string& period);

    asio::io_context& io_;
    ConnectionLimits limits_;
    HandOver hand_over_;
    std::shared_ptr<CallLedger> ledger_;
    std::unique_ptr<asio::posix::stream_descriptor> epoll_desc_; // owns the epoll set
    int epoll_fd_ = -1;
    asio::steady_timer sweep_timer_;
    asio::steady_timer log_timer_;
    bool sweep_armed_ = false;
    Clock::time_point sweep_due_;
    std::uint64_t sweep_gen_ = 0; // a sweep handler of an older generation does nothing
    bool log_armed_ = false;
    bool closed_ = false;
    CallLedger::Id next_id_ = 1;
    std::unordered_map<CallLedger::Id, Conn> conns_;
    std::unordered_map<uid_t, std::size_t> served_by_uid_;
    LogThrottle throttle_;
    Stats stats_;
    // Handlers queued in the loop hold a weak_ptr to this: expired means `this` is gone.
    std::shared_ptr<int> alive_;
};

} // namespace vigil
