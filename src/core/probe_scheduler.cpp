#include "vigil/probe_scheduler.hpp"

#include "vigil/log.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vigil {

// ---- ProbeLedger ---------------------------------------------------------------------

std::uint64_t ProbeLedger::start(TimePoint now) {
    const std::uint64_t seq = ++next_seq_;
    ++in_flight_;
    waiting_.push_back(Waiting{seq, now + timeout_});
    return seq;
}

void ProbeLedger::reset(Duration timeout, std::size_t max_in_flight) {
    timeout_ = timeout;
    max_in_flight_ = max_in_flight;
    waiting_.clear();
}

void ProbeLedger::returned() {
    if (in_flight_ > 0)
        --in_flight_;
}

std::optional<HealthOutcome> ProbeLedger::answer(std::uint64_t seq, HealthOutcome outcome) {
    auto it = std::find_if(waiting_.begin(), waiting_.end(),
                           [seq](const Waiting& w) { return w.seq == seq; });
    if (it == waiting_.end())
        return std::nullopt; // counted at its deadline, superseded, or cleared
    // Delivered: every older probe still waiting is stale now.
    waiting_.erase(waiting_.begin(), it + 1);
    return outcome;
}

std::vector<HealthOutcome> ProbeLedger::expire(TimePoint now) {
    std::vector<HealthOutcome> out;
    while (!waiting_.empty() && waiting_.front().deadline <= now) {
        waiting_.pop_front();
        out.push_back(HealthOutcome{HealthResult::deadline_exceeded,
                                    fmt::format("no answer within {}", format_duration(timeout_))});
    }
    return out;
}

std::optional<ProbeLedger::TimePoint> ProbeLedger::next_deadline() const {
    if (waiting_.empty())
        return std::nullopt;
    return waiting_.front().deadline;
}

std::size_t max_in_flight_for(Duration interval, Duration timeout) {
    const auto i = std::max<Duration::rep>(interval.count(), 1);
    const auto t = std::max<Duration::rep>(timeout.count(), 0);
    return static_cast<std::size_t>((t + i - 1) / i) + 1;
}

ProbeSchedule probe_schedule_for(const HealthConfig& config) {
    ProbeSchedule s;
    s.interval = config.interval;
    s.timeout = config.timeout;
    s.watch_path = unix_socket_path(config.address);
    return s;
}

// ---- ProbeScheduler ------------------------------------------------------------------

ProbeScheduler::ProbeScheduler(asio::io_context& io, ResultHandler on_result)
    : io_(io), on_result_(std::move(on_result)), self_(std::make_shared<ProbeScheduler*>(this)),
      tick_timer_(io), deadline_timer_(io) {}

ProbeScheduler::~ProbeScheduler() {
    self_.reset();
    watch_.reset();
}

void ProbeScheduler::start(HealthProber& prober, ProbeSchedule schedule, Phase phase) {
    stop();
    prober_ = &prober;
    schedule_ = std::move(schedule);
    phase_ = phase;
    ledger_.reset(schedule_.timeout, max_in_flight_for(schedule_.interval, schedule_.timeout));
    prober_->reset(); // one channel per child incarnation, or per new settings
    channel_used_ = false;
    starting_delay_ = schedule_.starting_first;
    if (phase_ == Phase::starting && !schedule_.watch_path.empty()) {
        auto w = SocketWatch::open(io_, schedule_.watch_path, [this] {
            log::debug("health socket {} appeared: probing now", schedule_.watch_path);
            probe_now();
        });
        if (w)
            watch_ = std::move(*w);
        else
            log::debug("not watching for {} to appear ({}): probing on a timer alone",
                       schedule_.watch_path, w.error().message());
    }
    arm_tick(schedule_.starting_first);
}

void ProbeScheduler::set_running() {
    if (!prober_)
        return;
    phase_ = Phase::running;
    watch_.reset();
    arm_tick(schedule_.interval);
}

void ProbeScheduler::stop() {
    ++epoch_;
    ++tick_gen_;
    ++deadline_gen_;
    prober_ = nullptr;
    watch_.reset();
    ledger_.clear();
    tick_timer_.cancel();
    deadline_timer_.cancel();
}

void ProbeScheduler::probe_now() {
    if (!prober_)
        return;
    starting_delay_ = schedule_.starting_first;
    on_tick();
}

void ProbeScheduler::arm_tick(Duration delay) {
    const unsigned gen = ++tick_gen_;
    tick_timer_.expires_after(delay);
    tick_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (!ec && lag_ != nullptr)
            lag_->record(tick_timer_.expiry());
        // A handler already queued when the timer was re-armed or cancelled: stale.
        if (ec || gen != tick_gen_)
            return;
        on_tick();
    });
}

void ProbeScheduler::on_tick() {
    if (!prober_)
        return;
    // The next tick first: a probe's answer (even a synchronous one) may stop or restart
    // the schedule, which re-arms or cancels it.
    Duration next = schedule_.interval;
    if (phase_ == Phase::starting) {
        next = starting_delay_;
        starting_delay_ =
            std::min({starting_delay_ * 2, schedule_.starting_max, schedule_.interval});
    }
    arm_tick(next);
    launch();
}

void ProbeScheduler::launch() {
    if (!ledger_.can_start()) {
        // Calls outlive their deadlines (the prober should have ended them): no more until
        // some return. The waiting probes' deadlines still count as failures.
        ++skipped_;
        log::debug("health probe skipped: {} calls still out (at most {})", ledger_.in_flight(),
                   ledger_.max_in_flight());
        return;
    }
    // Until the child first answers, each probe gets a fresh channel: a channel that saw
    // refused connections sits in gRPC's reconnect back-off and fails calls at once for a
    // while after the child starts serving.
    if (phase_ == Phase::starting && channel_used_)
        prober_->reset();
    channel_used_ = true;
    const std::uint64_t seq = ledger_.start(std::chrono::steady_clock::now());
    ++started_;
    if (ledger_.waiting() == 1)
        arm_deadline();
    prober_->probe([weak = std::weak_ptr<ProbeScheduler*>(self_), seq,
                    asked = std::chrono::steady_clock::now()](const HealthOutcome& out) {
        auto self = weak.lock();
        if (!self)
            return;
        if ((*self)->observer_)
            (*self)->observer_(out, std::chrono::duration_cast<Duration>(
                                        std::chrono::steady_clock::now() - asked));
        (*self)->on_answer(seq, out);
    });
}

void ProbeScheduler::on_answer(std::uint64_t seq, const HealthOutcome& outcome) {
    ledger_.returned();
    if (!prober_)
        return; // stopped: every answer is stale
    auto delivered = ledger_.answer(seq, outcome);
    if (!delivered) {
        log::debug("health probe #{} answered late ({}): ignored", seq, outcome.describe());
        return;
    }
    arm_deadline();
    deliver({*delivered});
}

void ProbeScheduler::arm_deadline() {
    const unsigned gen = ++deadline_gen_;
    auto when = ledger_.next_deadline();
    if (!when) {
        deadline_timer_.cancel();
        return;
    }
    deadline_timer_.expires_at(*when);
    deadline_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != deadline_gen_)
            return;
        on_deadline();
    });
}

void ProbeScheduler::on_deadline() {
    auto expired = ledger_.expire(std::chrono::steady_clock::now());
    arm_deadline();
    deliver(expired);
}

void ProbeScheduler::deliver(const std::vector<HealthOutcome>& outcomes) {
    // on_result may stop or restart the schedule: after that, the rest is stale.
    const unsigned epoch = epoch_;
    for (const auto& o : outcomes) {
        on_result_(o);
        if (epoch != epoch_)
            return;
    }
}

} // namespace vigil
