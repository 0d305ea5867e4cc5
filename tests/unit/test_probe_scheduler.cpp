// Probe scheduling (issue 10, targets 4 and 5): the ledger with a manual clock, and the
// scheduler driven through a real io_context with a fake prober whose answers the test
// gives (or withholds). No sleeps: the loop runs until a condition holds, with a deadline.
#include "vigil/probe_scheduler.hpp"

#include "fakes.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

using TimePoint = ProbeLedger::TimePoint;
using vigil::test::FakeProber;

struct Loop {
    asio::io_context io;
    FakeProber prober;
    std::vector<HealthOutcome> results;
    std::unique_ptr<ProbeScheduler> sched = std::make_unique<ProbeScheduler>(
        io, [this](const HealthOutcome& o) { results.push_back(o); });

    bool run_until(const std::function<bool()>& pred) { return test::run_io_until(io, pred); }
};

ProbeSchedule schedule(Duration interval, Duration timeout) {
    ProbeSchedule s;
    s.interval = interval;
    s.timeout = timeout;
    return s;
}

} // namespace

TEST_CASE("probe ledger: a hung child fails its threshold-th probe at timeout + (N-1) x interval",
          "[unit][probe]") {
    struct Row {
        int interval_ms, timeout_ms, threshold, expect_ms;
    };
    // Measured from the start of the first probe the child leaves unanswered.
    const Row rows[] = {
        {500, 3000, 3, 4000},   // the defaults (one at a time it was 3 x 3s + 2 x 500ms)
        {1000, 1000, 3, 3000},  //
        {200, 500, 3, 900},     // the containerd e2e test
        {2000, 5000, 5, 13000}, //
        {500, 3000, 1, 3000},   // threshold 1: the first deadline kills
        {100, 50, 4, 350},      // timeout below interval: no overlap
        {7, 1000, 10, 1063},    //
    };
    for (const auto& r : rows) {
        INFO("interval " << r.interval_ms << "ms timeout " << r.timeout_ms << "ms threshold "
                         << r.threshold);
        const Duration interval{r.interval_ms}, timeout{r.timeout_ms};
        ProbeLedger ledger(timeout, max_in_flight_for(interval, timeout));
        const TimePoint t0{};
        int failures = 0;
        int killed_at = -1;
        std::size_t most_out = 0;
        for (int ms = 0; ms <= 100'000 && killed_at < 0; ++ms) {
            const TimePoint now = t0 + Duration{ms};
            for (const auto& o : ledger.expire(now)) {
                CHECK(o.result == HealthResult::deadline_exceeded);
                ledger.returned(); // the call ends at its own deadline too
                if (++failures == r.threshold)
                    killed_at = ms;
            }
            if (ms % r.interval_ms == 0) {
                REQUIRE(ledger.can_start());
                (void)ledger.start(now);
                most_out = std::max(most_out, ledger.in_flight());
            }
        }
        CHECK(killed_at == r.expect_ms);
        CHECK(most_out <= max_in_flight_for(interval, timeout));
    }
}

TEST_CASE("probe ledger: late and out-of-order answers are stale", "[unit][probe]") {
    ProbeLedger ledger(1000ms, 10);
    const TimePoint t0{};
    const auto a = ledger.start(t0);
    const auto b = ledger.start(t0 + 100ms);
    const auto c = ledger.start(t0 + 200ms);
    const auto d = ledger.start(t0 + 300ms);
    CHECK(ledger.waiting() == 4);
    // a passes its deadline: one failure.
    auto expired = ledger.expire(t0 + 1000ms);
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].result == HealthResult::deadline_exceeded);
    CHECK(expired[0].detail == "no answer within 1s");
    // a's answer comes late: stale.
    CHECK_FALSE(ledger.answer(a, {HealthResult::serving, {}}));
    // c answers before b: delivered, and b becomes stale (also its deadline).
    auto got = ledger.answer(c, {HealthResult::not_serving, {}});
    REQUIRE(got);
    CHECK(got->result == HealthResult::not_serving);
    CHECK_FALSE(ledger.answer(b, {HealthResult::serving, {}}));
    CHECK(ledger.expire(t0 + 1100ms).empty());
    CHECK(ledger.waiting() == 1);
    // An answer is delivered once.
    REQUIRE(ledger.answer(d, {HealthResult::serving, {}}));
    CHECK_FALSE(ledger.answer(d, {HealthResult::serving, {}}));
    // After a reset, numbers go on: an answer from before is never taken for a new probe.
    ledger.reset(1000ms, 10);
    const auto e = ledger.start(t0 + 2000ms);
    CHECK(e > d);
    CHECK_FALSE(ledger.answer(a, {HealthResult::serving, {}}));
    CHECK(ledger.answer(e, {HealthResult::serving, {}}));
}

TEST_CASE("probe ledger: at most ceil(timeout / interval) + 1 calls out", "[unit][probe]") {
    CHECK(max_in_flight_for(500ms, 3000ms) == 7);
    CHECK(max_in_flight_for(1000ms, 1000ms) == 2);
    CHECK(max_in_flight_for(100ms, 50ms) == 2);
    CHECK(max_in_flight_for(300ms, 1000ms) == 5);
    CHECK(max_in_flight_for(0ms, 10ms) == 11); // a zero interval is taken as 1ms
    ProbeLedger ledger(3000ms, 2);
    (void)ledger.start({});
    (void)ledger.start({});
    CHECK_FALSE(ledger.can_start());
    ledger.clear(); // waiting probes are stale, but their calls are still out
    CHECK_FALSE(ledger.can_start());
    ledger.returned();
    CHECK(ledger.can_start());
}

TEST_CASE("probe scheduler: the second probe starts at interval while the first is still out",
          "[unit][probe]") {
    Loop l;
    l.sched->start(l.prober, schedule(10ms, 10s), ProbeScheduler::Phase::running);
    REQUIRE(l.run_until([&] { return l.prober.pending.size() >= 3; }));
    CHECK(l.results.empty());
    CHECK(l.sched->waiting() == l.prober.pending.size());
    // They answer in order: each is delivered.
    while (!l.prober.pending.empty())
        l.prober.answer_at(0, HealthResult::serving);
    CHECK(l.results.size() >= 3);
    CHECK(l.sched->in_flight() == 0);
}

TEST_CASE("probe scheduler: an unanswered probe fails at its deadline, once", "[unit][probe]") {
    Loop l;
    l.sched->start(l.prober, schedule(1h, 50ms), ProbeScheduler::Phase::running);
    REQUIRE(l.run_until([&] { return !l.results.empty(); }));
    REQUIRE(l.results.size() == 1);
    CHECK(l.results[0].result == HealthResult::deadline_exceeded);
    // The call comes back late: not delivered again.
    REQUIRE(l.prober.pending.size() == 1);
    l.prober.answer_at(0, HealthResult::serving);
    CHECK(l.results.size() == 1);
    CHECK(l.sched->in_flight() == 0);
}

TEST_CASE("probe scheduler: a hung prober costs a bounded number of calls", "[unit][probe]") {
    Loop l;
    l.sched->start(l.prober, schedule(10ms, 50ms), ProbeScheduler::Phase::running);
    // Calls never return (worse than gRPC, which ends each at its deadline).
    REQUIRE(l.run_until([&] { return l.sched->skipped() > 0; }));
    CHECK(l.sched->max_in_flight() == 6);
    CHECK(l.prober.pending.size() == 6);
    CHECK(l.sched->in_flight() == 6);
    // The deadlines counted as failures all the same.
    REQUIRE_FALSE(l.results.empty());
    for (const auto& r : l.results)
        CHECK(r.result == HealthResult::deadline_exceeded);
    // Once calls return, probing goes on.
    const auto before = l.sched->started();
    while (!l.prober.pending.empty())
        l.prober.answer_at(0, HealthResult::serving);
    REQUIRE(l.run_until([&] { return l.sched->started() > before; }));
}

TEST_CASE("probe scheduler: stop and restart leave nothing behind", "[unit][probe]") {
    Loop l;
    l.sched->start(l.prober, schedule(5ms, 10s), ProbeScheduler::Phase::running);
    REQUIRE(l.run_until([&] { return l.prober.pending.size() >= 2; }));
    l.sched->stop();
    CHECK_FALSE(l.sched->active());
    CHECK(l.sched->waiting() == 0);
    // Answers to a stopped schedule are dropped; the calls are no longer counted.
    while (!l.prober.pending.empty())
        l.prober.answer_at(0, HealthResult::not_serving);
    CHECK(l.results.empty());
    CHECK(l.sched->in_flight() == 0);

    // A restart with calls still out: their answers are stale for the new schedule.
    l.sched->start(l.prober, schedule(5ms, 10s), ProbeScheduler::Phase::running);
    REQUIRE(l.run_until([&] { return l.prober.pending.size() >= 1; }));
    auto old = std::move(l.prober.pending);
    l.prober.pending.clear();
    l.sched->start(l.prober, schedule(5ms, 10s), ProbeScheduler::Phase::running);
    for (auto& cb : old)
        cb(HealthOutcome{HealthResult::not_serving, {}});
    CHECK(l.results.empty());
    REQUIRE(l.run_until([&] { return !l.prober.pending.empty(); }));
    l.prober.answer_at(0, HealthResult::serving);
    REQUIRE(l.results.size() == 1);
    CHECK(l.results[0].result == HealthResult::serving);

    // The scheduler goes away with a call out: the call's answer does nothing.
    REQUIRE(l.run_until([&] { return !l.prober.pending.empty(); }));
    l.sched.reset();
    l.prober.answer_at(0, HealthResult::serving);
    CHECK(l.results.size() == 1);
    l.io.poll(); // the cancelled timers' handlers run harmlessly
}

TEST_CASE("probe scheduler: starting probes fast, each on a fresh channel", "[unit][probe]") {
    Loop l;
    l.sched->start(l.prober, schedule(1h, 3s), ProbeScheduler::Phase::starting);
    CHECK(l.prober.resets == 1);
    // 2, 4, 8, 10, 10 ms apart although interval is an hour; each refused at once.
    for (int i = 0; i < 5; ++i) {
        REQUIRE(l.run_until([&] { return !l.prober.pending.empty(); }));
        l.prober.answer_at(0, HealthResult::connection_refused);
    }
    CHECK(l.sched->started() == 5);
    CHECK(l.prober.resets == 5); // the first probe uses the channel start() opened
    REQUIRE(l.run_until([&] { return !l.prober.pending.empty(); }));
    l.sched->set_running();
    CHECK(l.sched->phase() == ProbeScheduler::Phase::running);
    l.prober.answer_at(0, HealthResult::serving);
    REQUIRE(l.results.size() == 6);
    CHECK(l.results[5].result == HealthResult::serving);
    // Running with an hour's interval: the cap is ceil(3s / 1h) + 1.
    CHECK(l.sched->max_in_flight() == 2);
}

TEST_CASE("probe scheduler: while starting, a probe starts as soon as the socket appears",
          "[unit][probe]") {
    char t[] = "/tmp/vigil-probe.XXXXXX";
    const std::string dir = ::mkdtemp(t);
    Loop l;
    ProbeSchedule s = schedule(1h, 3s);
    s.starting_first = 1h; // no blind probes: only the socket's appearance starts one
    s.watch_path = dir + "/child.sock";
    l.sched->start(l.prober, s, ProbeScheduler::Phase::starting);
    CHECK(l.sched->watching());
    l.io.poll();
    CHECK(l.prober.pending.empty());

    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", s.watch_path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(l.run_until([&] { return l.prober.pending.size() == 1; }));
    ::close(fd);

    // Running: the watch is closed.
    l.sched->set_running();
    CHECK_FALSE(l.sched->watching());
    std::filesystem::remove_all(dir);
}

TEST_CASE("unix_socket_path: only absolute unix: targets are watched", "[unit][probe]") {
    CHECK(unix_socket_path("unix:///run/vigil/containerd.sock") == "/run/vigil/containerd.sock");
    CHECK(unix_socket_path("unix:/run/x.sock") == "/run/x.sock");
    CHECK(unix_socket_path("unix:relative.sock").empty());
    CHECK(unix_socket_path("unix-abstract:name").empty());
    CHECK(unix_socket_path("127.0.0.1:9000").empty());
    CHECK(unix_socket_path("unix://").empty());
}
