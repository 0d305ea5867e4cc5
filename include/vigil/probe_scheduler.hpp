// Probe scheduling: when health probes start, each probe's deadline, and which answers
// count. The supervisor decides what a result means (threshold, states); this decides
// which results there are.
//
// Probes start on a fixed schedule whether or not earlier ones answered (DESIGN.md), each
// with its own deadline, so a hung child is killed within
// timeout + (failure_threshold - 1) x interval of the first probe it leaves unanswered.
// Results are delivered in probe order: once a probe's result is delivered, every older
// probe is stale, and so is any answer that comes after its probe's deadline.
//
// Threading: loop thread only. The prober's callbacks run on the loop (HealthProber's
// contract); they hold only a weak reference, so a callback that arrives after stop() or
// after the scheduler is gone does nothing.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/health.hpp"
#include "vigil/loop_lag.hpp"
#include "vigil/socket_watch.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vigil {

// The bookkeeping of probes apart from timers: the scheduler feeds it the loop's clock,
// tests their own. Sequence numbers are never reused, so an answer from before a clear()
// is recognised as stale.
class ProbeLedger {
public:
    using TimePoint = std::chrono::steady_clock::time_point;

    ProbeLedger(Duration timeout, std::size_t max_in_flight)
        : timeout_(timeout), max_in_flight_(max_in_flight) {}

    // At most this many calls are out at once (see max_in_flight_for).
    bool can_start() const { return in_flight_ < max_in_flight_; }
    // A probe starts at `now`: its sequence number. Its deadline is now + timeout.
    std::uint64_t start(TimePoint now);
    // The prober called back for `seq` (whatever it said, stale or not): one call fewer out.
    void returned();
    // The answer to probe `seq`: the outcome to deliver, or nullopt when it is stale (its
    // deadline was already counted, or a newer probe's result was delivered, or clear()).
    std::optional<HealthOutcome> answer(std::uint64_t seq, HealthOutcome outcome);
    // Probes whose deadline is at or before `now`, oldest first: each one a
    // deadline-exceeded failure to deliver.
    std::vector<HealthOutcome> expire(TimePoint now);
    // The earliest deadline of a probe still waiting for its answer.
    std::optional<TimePoint> next_deadline() const;
    // Every waiting probe becomes stale (calls still out stay counted until they return).
    void clear() { waiting_.clear(); }
    // clear(), and new settings for the probes to come. Sequence numbers go on.
    void reset(Duration timeout, std::size_t max_in_flight);

    std::size_t waiting() const { return waiting_.size(); }
    std::size_t in_flight() const { return in_flight_; }
    std::size_t max_in_flight() const { return max_in_flight_; }

private:
    struct Waiting {
        std::uint64_t seq;
        TimePoint deadline;
    };
    Duration timeout_;
    std::size_t max_in_flight_;
    std::size_t in_flight_ = 0;
    std::uint64_t next_seq_ = 0;
    std::deque<Waiting> waiting_; // in start order, so deadlines ascend
};

// ceil(timeout / interval) + 1: every probe that can still be within its deadline, plus
// one. A call's own (gRPC) deadline ends it by then, so the cap only bites when calls
// linger past it; then a tick is skipped, and the waiting probes' deadlines still count.
std::size_t max_in_flight_for(Duration interval, Duration timeout);

struct ProbeSchedule {
    Duration interval{500}; // running: one probe per interval
    Duration timeout{3000}; // each probe's own deadline
    // Starting: the first probe this soon, then each wait twice the last, up to
    // starting_max (or interval if shorter): readiness is seen within milliseconds.
    Duration starting_first{2};
    Duration starting_max{10};
    // A unix socket path ("" = none): while starting, a probe starts at once when it
    // appears (SocketWatch), and the fast schedule starts over.
    std::string watch_path;
};

// The schedule for a [health] config: watch_path from a "unix:" address.
ProbeSchedule probe_schedule_for(const HealthConfig& config);

class ProbeScheduler {
public:
    enum class Phase { starting, running };
    using ResultHandler = std::function<void(const HealthOutcome&)>;

    // `on_result` runs on the loop for each delivered result, in probe order. It may call
    // any member (set_running, stop, start).
    ProbeScheduler(asio::io_context& io, ResultHandler on_result);
    ~ProbeScheduler();
    ProbeScheduler(const ProbeScheduler&) = delete;
    ProbeScheduler& operator=(const ProbeScheduler&) = delete;

    // Probes a new child incarnation (or the same child with new settings): forgets every
    // waiting probe, resets the prober (a new channel), and starts the first probe after
    // starting_first. `prober` must outlive the scheduler's use of it (until stop() or the
    // next start()).
    void start(HealthProber& prober, ProbeSchedule schedule, Phase phase);
    // The child answered healthy while starting: one probe per interval from now on, and
    // no socket watch.
    void set_running();
    // No more probes; waiting probes become stale; the socket watch is closed.
    void stop();
    // Sees every call as it returns, stale or not, with how long it took (the metrics).
    using Observer = std::function<void(const HealthOutcome&, Duration)>;
    void set_observer(Observer o) { observer_ = std::move(o); }
    // Where the probe timer records its lateness (the loop-lag figure); may be null.
    void set_loop_lag(LoopLag* lag) { lag_ = lag; }
    // A probe now (the socket appeared, or the child was stopped by a signal): starting,
    // the fast schedule starts over; running, the interval is counted from now.
    void probe_now();

    bool active() const { return prober_ != nullptr; }
    Phase phase() const { return phase_; }
    std::size_t waiting() const { return ledger_.waiting(); }
    std::size_t in_flight() const { return ledger_.in_flight(); }
    std::size_t max_in_flight() const { return ledger_.max_in_flight(); }
    std::uint64_t started() const { return started_; }
    std::uint64_t skipped() const { return skipped_; } // ticks skipped at the cap
    bool watching() const { return watch_ != nullptr; }

private:
    void arm_tick(Duration delay);
    void on_tick();
    void launch();
    void on_answer(std::uint64_t seq, const HealthOutcome& outcome);
    void arm_deadline();
    void on_deadline();
    void deliver(const std::vector<HealthOutcome>& outcomes);

    asio::io_context& io_;
    ResultHandler on_result_;
    HealthProber* prober_ = nullptr;
    ProbeSchedule schedule_;
    Phase phase_ = Phase::starting;
    ProbeLedger ledger_{Duration{3000}, 1};
    Observer observer_;
    LoopLag* lag_ = nullptr;
    Duration starting_delay_{};
    bool channel_used_ = false; // starting: the prober's channel saw a probe already
    // Queued timer handlers cannot be recalled by cancel(): each checks the generation it
    // was armed with. epoch_ changes at start() and stop(): results of before are stale.
    unsigned tick_gen_ = 0;
    unsigned deadline_gen_ = 0;
    unsigned epoch_ = 0;
    std::uint64_t started_ = 0;
    std::uint64_t skipped_ = 0;
    // Callbacks hold a weak reference: they do nothing once the scheduler is gone.
    std::shared_ptr<ProbeScheduler*> self_;
    std::unique_ptr<SocketWatch> watch_;
    asio::steady_timer tick_timer_;
    asio::steady_timer deadline_timer_;
};

} // namespace vigil
