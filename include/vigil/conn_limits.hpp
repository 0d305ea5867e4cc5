// How many control connections vigild takes, and from whom: pure policy, no I/O.
//
// The control socket may be open to other users (control_socket_mode 0666). Every
// connection costs vigild file descriptors, and the child's spawn needs descriptors too
// (the exec-report pipe, a pidfd, capture pipes, record files, the health probe's
// channel). So the connections vigild keeps are capped from RLIMIT_NOFILE, leaving a
// reserve the socket can never eat; a peer that is refused or denied holds no descriptor
// for long. See docs/control-api.md, "Connection limits".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

using Clock = std::chrono::steady_clock;

struct ConnectionLimits {
    std::size_t max_total = 0;                 // connections served (allowed peers) at once
    std::size_t max_per_uid = 0;               // ... of which one uid may hold
    std::size_t root_reserved = 0;             // ... of which only root and vigild's uid may take
    std::size_t max_rejected = 0;              // denied or refused connections kept to be answered
    std::chrono::milliseconds idle_timeout{0}; // served connection with no open call
    std::chrono::milliseconds rejected_grace{0}; // rejected connection that makes no call
    std::chrono::milliseconds log_period{0};     // one summary line per period and kind

    // The limits for a process whose fd limit (soft RLIMIT_NOFILE) is `fd_limit` and which
    // has `fds_in_use` open now (before any connection).
    static ConnectionLimits from_fd_limit(std::uint64_t fd_limit, std::size_t fds_in_use);
};

// What to do with a new connection.
enum class Admission {
    serve,       // hand it to the control API
    deny,        // hand it to the deny-all server: PERMISSION_DENIED, then closed
    refuse_busy, // hand it to the busy server: RESOURCE_EXHAUSTED, then closed
    close_now,   // close at once: too many rejected connections already being answered
};

struct ConnectionCounts {
    std::size_t served = 0;        // all served connections
    std::size_t served_by_uid = 0; // served connections of this peer's uid
    std::size_t rejected = 0;      // denied + refused connections being answered
};

// `allowed`: the peer may use the API; `privileged`: it is root or vigild's own uid.
Admission admit(const ConnectionLimits& limits, const ConnectionCounts& counts, bool allowed,
                bool privileged);

// Rate-limited log lines, keyed by what happened ("denied uid 65534"). The first event of
// a key is logged in full; the following ones within `period` are only counted, and one
// summary per key is due when the period ends (a steady flood gives one line per period).
// Not thread-safe: the loop thread owns it.
class LogThrottle {
public:
    explicit LogThrottle(std::chrono::milliseconds period, std::size_t max_keys = 64);

    // True when this event should be logged in full now. Past `max_keys` distinct keys in
    // one period, new keys are counted under "other".
    bool note(const std::string& key, Clock::time_point now);

    struct Summary {
        std::string key;
        std::uint64_t suppressed; // events not logged in full during the period
    };
    // The summaries whose period has ended by `now`; keys with nothing suppressed are
    // forgotten, so their next event is logged in full again.
    std::vector<Summary> take_due(Clock::time_point now);
    // Every count not yet reported, due or not (at shutdown); forgets all keys.
    std::vector<Summary> take_all();
    // When the next summary is due; nullopt when nothing is pending.
    std::optional<Clock::time_point> next_due() const;

    std::chrono::milliseconds period() const { return period_; }

private:
    struct Window {
        Clock::time_point end;
        std::uint64_t suppressed = 0;
    };
    std::chrono::milliseconds period_;
    std::size_t max_keys_;
    std::map<std::string, Window> windows_;
};

} // namespace vigil
