#include "vigil/control_conns.hpp"

#include "vigil/config.hpp"
#include "vigil/log.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <sys/epoll.h>

namespace vigil {

namespace {

// The idle and grace deadlines are checked every quarter of the shorter one that applies:
// while a rejected connection is open, a quarter of the grace (at most kMaxGraceSweep);
// otherwise a quarter of the idle timeout (at most kMaxIdleSweep). Nothing wakes the loop
// when no connection is open.
constexpr std::chrono::milliseconds kMaxGraceSweep{250};
constexpr std::chrono::milliseconds kMaxIdleSweep{15'000};
constexpr std::chrono::milliseconds kMinSweep{10};
// Hang-ups read from the epoll set per call of epoll_wait.
constexpr int kEventsPerRead = 64;

std::string period_text(std::chrono::milliseconds p) {
    return format_duration(p);
}

} // namespace

// ---------------------------------------------------------------------------------------

CallLedger::Id CallLedger::call_started(std::string_view peer) {
    constexpr std::string_view kPrefix = "fd:";
    if (peer.substr(0, kPrefix.size()) != kPrefix)
        return 0;
    int fd = -1;
    const char* begin = peer.data() + kPrefix.size();
    const char* end = peer.data() + peer.size();
    if (auto [p, ec] = std::from_chars(begin, end, fd); ec != std::errc() || p != end)
        return 0;
    std::lock_guard lk(mu_);
    auto it = by_fd_.find(fd);
    if (it == by_fd_.end())
        return 0;
    auto& a = activity_[it->second];
    ++a.open_calls;
    ++a.calls_total;
    a.last_change = Clock::now();
    return it->second;
}

void CallLedger::call_ended(Id id) {
    if (id == 0)
        return;
    std::function<void(Id)> hook;
    {
        std::lock_guard lk(mu_);
        auto it = activity_.find(id);
        if (it == activity_.end())
            return;
        if (it->second.open_calls > 0)
            --it->second.open_calls;
        it->second.last_change = Clock::now();
        hook = ended_hook_;
    }
    if (hook)
        hook(id);
}

void CallLedger::set_ended_hook(std::function<void(Id)> hook) {
    std::lock_guard lk(mu_);
    ended_hook_ = std::move(hook);
}

void CallLedger::add(int grpc_fd, Id id, Clock::time_point now) {
    std::lock_guard lk(mu_);
    by_fd_[grpc_fd] = id; // a reused fd number now names the new connection
    activity_[id] = Activity{0, 0, now};
}

void CallLedger::remove(Id id, int grpc_fd) {
    std::lock_guard lk(mu_);
    activity_.erase(id);
    if (auto it = by_fd_.find(grpc_fd); it != by_fd_.end() && it->second == id)
        by_fd_.erase(it);
}

std::optional<CallLedger::Activity> CallLedger::activity(Id id) {
    std::lock_guard lk(mu_);
    auto it = activity_.find(id);
    if (it == activity_.end())
        return std::nullopt;
    return it->second;
}

// ---------------------------------------------------------------------------------------

ControlConnections::ControlConnections(asio::io_context& io, ConnectionLimits limits,
                                       HandOver hand_over)
    : io_(io), limits_(limits), hand_over_(std::move(hand_over)),
      ledger_(std::make_shared<CallLedger>()), sweep_timer_(io), log_timer_(io),
      throttle_(limits.log_period), alive_(std::make_shared<int>(0)) {}

ControlConnections::~ControlConnections() {
    ledger_->set_ended_hook({});
    close_all();
}

Status ControlConnections::start() {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep.valid())
        return make_error(errno, "failed to create the epoll set for control connections");
    epoll_desc_ = std::make_unique<asio::posix::stream_descriptor>(io_);
    boost::system::error_code ec;
    epoll_desc_->assign(ep.get(), ec);
    if (ec)
        return make_error(ec.value(), "failed to watch control connections");
    epoll_fd_ = ep.release(); // owned by epoll_desc_ from now on
    // A call that ends on a gRPC thread is looked at on the loop: a rejected connection
    // that got its answer is closed then.
    ledger_->set_ended_hook(
        [&io = io_, this, alive = std::weak_ptr<int>(alive_)](CallLedger::Id id) {
            asio::post(io, [this, alive, id] {
                if (!alive.expired())
                    on_call_ended(id);
            });
        });
    start_watch();
    return ok_status();
}

void ControlConnections::start_watch() {
    epoll_desc_->async_wait(
        asio::posix::descriptor_base::wait_read,
        [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
            if (alive.expired() || closed_ || ec)
                return;
            on_watch_ready();
            start_watch();
        });
}

void ControlConnections::on_watch_ready() {
    epoll_event events[kEventsPerRead];
    for (;;) {
        const int n = ::epoll_wait(epoll_fd_, events, kEventsPerRead, 0);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < n; ++i)
            release(events[i].data.u64); // the peer left, or gRPC ended the connection
        if (n < kEventsPerRead)
            return;
    }
}

void ControlConnections::take(UniqueFd fd, const Peer& peer) {
    if (closed_)
        return;
    const auto by_uid = served_by_uid_.find(peer.uid);
    const ConnectionCounts counts{
        stats_.served, by_uid == served_by_uid_.end() ? 0 : by_uid->second, stats_.rejected};
    const Admission admission = admit(limits_, counts, peer.allowed, peer.privileged);
    const std::string uid = std::to_string(peer.uid);
    Route route = Route::serve;
    switch (admission) {
    case Admission::close_now:
        ++stats_.closed_at_accept;
        log_first("unanswered:" + uid,
                  fmt::format("closed a control connection from uid {} (pid {}) unanswered: {} "
                              "rejected connections are being answered already (the limit); "
                              "more are summarised every {}",
                              peer.uid, peer.pid, limits_.max_rejected,
                              period_text(limits_.log_period)));
        return;
    case Admission::deny:
        route = Route::deny;
        log_first("denied:" + uid,
                  fmt::format("control connection from uid {} (pid {}) denied: not root, "
                              "vigild's uid or in allowed_uids; more denials are summarised "
                              "every {}",
                              peer.uid, peer.pid, period_text(limits_.log_period)));
        break;
    case Admission::refuse_busy:
        route = Route::busy;
        log_first("refused:" + uid,
                  fmt::format("control connection from uid {} (pid {}) refused: {} served "
                              "connections open, {} of them uid {}'s (limits {} in total, {} "
                              "per uid); more are summarised every {}",
                              peer.uid, peer.pid, stats_.served, counts.served_by_uid, peer.uid,
                              limits_.max_total, limits_.max_per_uid,
                              period_text(limits_.log_period)));
        break;
    case Admission::serve:
        log::debug("control connection from uid {} (pid {})", peer.uid, peer.pid);
        break;
    }

    UniqueFd watch(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!watch.valid()) {
        ++stats_.closed_at_accept;
        log_first("watch", fmt::format("closing a control connection from uid {}: cannot "
                                       "duplicate its fd to watch it: {}",
                                       peer.uid, std::strerror(errno)));
        return;
    }
    const CallLedger::Id id = next_id_++;
    epoll_event ev{};
    ev.events = EPOLLRDHUP; // EPOLLHUP and EPOLLERR come anyway
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, watch.get(), &ev) != 0) {
        ++stats_.closed_at_accept;
        log_first("watch", fmt::format("closing a control connection from uid {}: cannot "
                                       "watch it: {}",
                                       peer.uid, std::strerror(errno)));
        return;
    }
    const auto now = Clock::now();
    const int grpc_fd = fd.get();
    // In the ledger before gRPC has the fd, so its first call is counted.
    ledger_->add(grpc_fd, id, now);
    conns_.emplace(id, Conn{std::move(watch), grpc_fd, peer.uid, route, now});
    if (route == Route::serve) {
        ++stats_.served;
        ++served_by_uid_[peer.uid];
    } else {
        ++stats_.rejected;
    }
    hand_over_(route, fd.release());
    arm_sweep();
}

void ControlConnections::release(CallLedger::Id id) {
    auto it = conns_.find(id);
    if (it == conns_.end())
        return;
    Conn& c = it->second;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.watch.get(), nullptr);
    ledger_->remove(id, c.grpc_fd);
    if (c.route == Route::serve) {
        --stats_.served;
        if (auto u = served_by_uid_.find(c.uid); u != served_by_uid_.end() && --u->second == 0)
            served_by_uid_.erase(u);
    } else {
        --stats_.rejected;
    }
    conns_.erase(it); // closes the duplicate
}

void ControlConnections::end(CallLedger::Id id, const char* why) {
    auto it = conns_.find(id);
    if (it == conns_.end())
        return;
    // Rejected connections are counted in the rate-limited lines, never one line each.
    if (it->second.route == Route::serve)
        log::debug("closing control connection fd {} of uid {}: {}", it->second.grpc_fd,
                   it->second.uid, why);
    // Ends the connection for gRPC too: its next read sees EOF and it closes its fd.
    ::shutdown(it->second.watch.get(), SHUT_RDWR);
    release(id);
}

void ControlConnections::on_call_ended(CallLedger::Id id) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.route == Route::serve)
        return;
    // A rejected peer got its answer (the status is written when the call ends).
    if (auto a = ledger_->activity(id); a && a->open_calls == 0) {
        ++stats_.closed_rejected;
        end(id, "rejected and answered");
    }
}

void ControlConnections::arm_sweep() {
    if (closed_ || conns_.empty())
        return;
    const auto period = stats_.rejected > 0
                            ? std::clamp(limits_.rejected_grace / 4, kMinSweep, kMaxGraceSweep)
                            : std::clamp(limits_.idle_timeout / 4, kMinSweep, kMaxIdleSweep);
    const auto due = Clock::now() + period;
    if (sweep_armed_ && sweep_due_ <= due)
        return;
    // Sooner than the armed sweep (a rejected connection arrived): re-arm. The cancelled
    // wait's handler still runs; the generation tells it it is stale.
    sweep_armed_ = true;
    sweep_due_ = due;
    const auto gen = ++sweep_gen_;
    sweep_timer_.expires_at(due);
    sweep_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_), gen](boost::system::error_code ec) {
            if (alive.expired() || gen != sweep_gen_)
                return;
            sweep_armed_ = false;
            if (ec || closed_)
                return;
            sweep();
            arm_sweep();
        });
}

void ControlConnections::sweep() {
    const auto now = Clock::now();
    std::vector<std::pair<CallLedger::Id, const char*>> due;
    for (const auto& [id, c] : conns_) {
        if (c.route != Route::serve) {
            if (now - c.since >= limits_.rejected_grace)
                due.emplace_back(id, "rejected, no call within the grace");
            continue;
        }
        auto a = ledger_->activity(id);
        if (a && a->open_calls == 0 && now - a->last_change >= limits_.idle_timeout)
            due.emplace_back(id, "idle");
    }
    for (const auto& [id, why] : due) {
        if (auto it = conns_.find(id); it != conns_.end())
            ++(it->second.route == Route::serve ? stats_.closed_idle : stats_.closed_rejected);
        end(id, why);
    }
}

void ControlConnections::note_accept_error(int err, bool shed) {
    if (shed)
        ++stats_.shed;
    log_first("accept",
              fmt::format("control socket: accept failed: {}{}; more failures are "
                          "summarised every {}",
                          std::strerror(err), shed ? " (the pending connection was closed)" : "",
                          period_text(limits_.log_period)));
}

void ControlConnections::log_first(const std::string& key, const std::string& line) {
    if (throttle_.note(key, Clock::now()))
        log::warn("{}", line);
    arm_log_timer();
}

void ControlConnections::arm_log_timer() {
    if (log_armed_ || closed_)
        return;
    const auto due = throttle_.next_due();
    if (!due)
        return;
    log_armed_ = true;
    log_timer_.expires_at(*due);
    log_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (alive.expired())
            return;
        log_armed_ = false;
        if (ec || closed_)
            return;
        log_summaries(throttle_.take_due(Clock::now()),
                      "in the last " + period_text(throttle_.period()));
        arm_log_timer();
    });
}

// `period`: "in the last 10s", or "since the last report" at shutdown.
void ControlConnections::log_summaries(const std::vector<LogThrottle::Summary>& summaries,
                                       const std::string& period) {
    for (const auto& s : summaries) {
        const auto colon = s.key.find(':');
        const std::string kind = s.key.substr(0, colon);
        const std::string uid = colon == std::string::npos ? "" : s.key.substr(colon + 1);
        if (kind == "denied")
            log::warn("denied {} more control connections from uid {} {}", s.suppressed, uid,
                      period);
        else if (kind == "refused")
            log::warn("refused {} more control connections from uid {} {} "
                      "(connection limit)",
                      s.suppressed, uid, period);
        else if (kind == "unanswered")
            log::warn("closed {} more control connections from uid {} unanswered "
                      "{} (too many rejected connections at once)",
                      s.suppressed, uid, period);
        else if (kind == "accept")
            log::warn("control socket: accept failed {} more times {}", s.suppressed, period);
        else
            log::warn("{} more control connection events ({}) {}", s.suppressed, s.key, period);
    }
}

void ControlConnections::close_all() {
    if (closed_)
        return;
    closed_ = true;
    boost::system::error_code ec;
    sweep_timer_.cancel();
    log_timer_.cancel();
    // What the throttle still counts is said now, or never.
    log_summaries(throttle_.take_all(), "since the last report");
    while (!conns_.empty())
        release(conns_.begin()->first);
    if (epoll_desc_)
        epoll_desc_->close(ec);
    epoll_fd_ = -1;
}

} // namespace vigil
