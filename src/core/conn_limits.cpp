#include "vigil/conn_limits.hpp"

#include <algorithm>

namespace vigil {

namespace {

// Descriptors the control socket never takes, for everything else vigild opens while it
// runs: the child's spawn (exec-report pipe 2, pidfd 1, capture pipes 4, the temp file and
// directory of each record written 2-3), the health probe's channel, the notify socket,
// the accept-shedding spare fd, and gRPC's own wake-up fds. Generous on purpose: a spawn
// that hits EMFILE is the failure this reserve exists to prevent.
constexpr std::uint64_t kSpawnReserveFds = 64;
// A tracked connection costs two descriptors: the one gRPC owns and vigild's duplicate,
// through which vigild watches the connection and ends it (shutdown(2)).
constexpr std::uint64_t kFdsPerConnection = 2;
// Upper bounds whatever the fd limit: a control API has no use for more.
constexpr std::size_t kMaxConnections = 256;
constexpr std::size_t kMaxConnectionsPerUid = 32;
// Slots of the total only root and vigild's own uid may take, so other allowed uids
// cannot lock the operator out.
constexpr std::size_t kRootReservedConnections = 4;
// Denied or refused connections kept open until answered (or the grace ends); more than
// this at once are closed at accept without an answer.
constexpr std::size_t kMaxRejectedInFlight = 16;
// A served connection with no open call (no unary call pending, no stream) this long is
// closed; a client's channel reconnects by itself on its next call.
constexpr std::chrono::milliseconds kIdleTimeout{60'000};
// A rejected connection is closed right after its first answer, or after this long when
// it makes no call.
constexpr std::chrono::milliseconds kRejectedGrace{1'000};
// Refused, denied and failed accepts are logged once per this period and kind.
constexpr std::chrono::milliseconds kLogPeriod{10'000};
// The key under which a LogThrottle counts events past its max_keys distinct keys.
constexpr const char* kOtherKey = "other";

} // namespace

ConnectionLimits ConnectionLimits::from_fd_limit(std::uint64_t fd_limit, std::size_t fds_in_use) {
    const std::uint64_t used = static_cast<std::uint64_t>(fds_in_use) + kSpawnReserveFds;
    const std::uint64_t slots = fd_limit > used ? (fd_limit - used) / kFdsPerConnection : 0;
    ConnectionLimits l;
    l.max_rejected =
        static_cast<std::size_t>(std::clamp<std::uint64_t>(slots / 4, 1, kMaxRejectedInFlight));
    l.max_total = static_cast<std::size_t>(std::clamp<std::uint64_t>(
        slots > l.max_rejected ? slots - l.max_rejected : 0, 1, kMaxConnections));
    l.max_per_uid = std::min(kMaxConnectionsPerUid, l.max_total);
    l.root_reserved = std::min(kRootReservedConnections, l.max_total / 2);
    l.idle_timeout = kIdleTimeout;
    l.rejected_grace = kRejectedGrace;
    l.log_period = kLogPeriod;
    return l;
}

Admission admit(const ConnectionLimits& limits, const ConnectionCounts& counts, bool allowed,
                bool privileged) {
    const bool room_to_answer = counts.rejected < limits.max_rejected;
    if (!allowed)
        return room_to_answer ? Admission::deny : Admission::close_now;
    const std::size_t ceiling =
        privileged ? limits.max_total
                   : limits.max_total - std::min(limits.max_total, limits.root_reserved);
    if (counts.served >= ceiling || counts.served_by_uid >= limits.max_per_uid)
        return room_to_answer ? Admission::refuse_busy : Admission::close_now;
    return Admission::serve;
}

LogThrottle::LogThrottle(std::chrono::milliseconds period, std::size_t max_keys)
    : period_(period), max_keys_(std::max<std::size_t>(max_keys, 1)) {}

bool LogThrottle::note(const std::string& key, Clock::time_point now) {
    std::string k = key;
    if (windows_.count(k) == 0 && windows_.size() >= max_keys_)
        k = kOtherKey;
    auto it = windows_.find(k);
    // An ended window with a count still to report keeps counting until take_due().
    if (it != windows_.end() && (now < it->second.end || it->second.suppressed > 0)) {
        ++it->second.suppressed;
        return false;
    }
    windows_[k] = Window{now + period_, 0};
    return true;
}

std::vector<LogThrottle::Summary> LogThrottle::take_due(Clock::time_point now) {
    std::vector<Summary> out;
    for (auto it = windows_.begin(); it != windows_.end();) {
        if (now < it->second.end) {
            ++it;
            continue;
        }
        if (it->second.suppressed == 0) {
            it = windows_.erase(it);
            continue;
        }
        // A flood goes on: report it and open the next window, still counting.
        out.push_back(Summary{it->first, it->second.suppressed});
        it->second = Window{now + period_, 0};
        ++it;
    }
    return out;
}

std::vector<LogThrottle::Summary> LogThrottle::take_all() {
    std::vector<Summary> out;
    for (const auto& [key, w] : windows_)
        if (w.suppressed > 0)
            out.push_back(Summary{key, w.suppressed});
    windows_.clear();
    return out;
}

std::optional<Clock::time_point> LogThrottle::next_due() const {
    std::optional<Clock::time_point> due;
    for (const auto& [key, w] : windows_)
        if (!due || w.end < *due)
            due = w.end;
    return due;
}

} // namespace vigil
