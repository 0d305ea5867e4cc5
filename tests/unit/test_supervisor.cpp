// The supervisor's health state machine with a fake prober: the test decides every probe's
// answer and when it arrives. The child is a real /bin/sleep (the supervisor spawns and
// reaps it), so this is a component test of the state machine, with no gRPC and no sleeps:
// the loop runs until the state the test waits for, with a deadline.
#include "vigil/reaper.hpp"
#include "vigil/supervisor.hpp"

#include "fakes.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;
using vigil::test::FakeProber;

namespace {

struct Fixture {
    Fixture() {
        char t[] = "/tmp/vigil-sup.XXXXXX";
        dir = ::mkdtemp(t);
        config = test::sleep_child_config(dir);
        std::filesystem::create_directories(config.daemon.state_dir);
        config.health.kind = HealthKind::grpc;
        config.health.interval = 10ms;
        config.health.failure_threshold = 3;
        config.health.startup_timeout = 20s;
        config.restart.backoff_initial = 10ms;
        auto p = std::make_unique<FakeProber>();
        prober = p.get();
        sup = std::make_unique<Supervisor>(io, reaper, config, std::move(p));
        sup->set_fatal_handler([this](int code, const std::string&) { fatal = code; });
    }
    ~Fixture() {
        if (sup->child_pid() > 0)
            ::kill(sup->child_pid(), SIGKILL);
        sup.reset();
        std::filesystem::remove_all(dir);
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
    }
    // Turns the loop until `pred` holds (or 10s pass).
    bool run_until(const std::function<bool()>& pred) { return test::run_io_until(io, pred); }
    bool wait_probe() {
        return run_until([&] { return !prober->pending.empty(); });
    }

    std::string dir;
    asio::io_context io;
    Reaper reaper{io};
    Config config;
    FakeProber* prober = nullptr;
    std::unique_ptr<Supervisor> sup;
    std::optional<int> fatal;
};

} // namespace

TEST_CASE("supervisor: starting until SERVING, failures counted to the threshold, recovery",
          "[unit][supervisor]") {
    Fixture f;
    f.sup->start_initial();
    REQUIRE(f.sup->state() == ChildState::starting);
    const pid_t pid = f.sup->child_pid();
    REQUIRE(pid > 0);

    // Refused connections keep it starting.
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::connection_refused);
    CHECK(f.sup->state() == ChildState::starting);
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);

    // Two failures: unhealthy, not killed; a SERVING answer clears it.
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::not_serving);
    CHECK(f.sup->state() == ChildState::unhealthy);
    CHECK(f.sup->status().consecutive_health_failures == 1);
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::deadline_exceeded);
    CHECK(f.sup->status().consecutive_health_failures == 2);
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);
    CHECK(f.sup->status().consecutive_health_failures == 0);

    // Three in a row: killed (SIGKILL), then restarted through back-off.
    for (auto r :
         {HealthResult::unknown, HealthResult::service_unknown, HealthResult::deadline_exceeded}) {
        REQUIRE(f.wait_probe());
        f.prober->answer(r);
    }
    REQUIRE(f.run_until([&] { return f.sup->child_pid() != pid && f.sup->child_pid() != 0; }));
    auto st = f.sup->status();
    REQUIRE(st.last_exit.has_value());
    CHECK(st.last_exit->kind == ExitStatus::Kind::signaled);
    CHECK(st.last_exit->value == SIGKILL);
    CHECK(f.sup->restart_count() == 1);
    CHECK(f.sup->state() == ChildState::starting);
    CHECK_FALSE(f.fatal.has_value());
}

TEST_CASE("supervisor: a probe answer for an earlier child is ignored", "[unit][supervisor]") {
    Fixture f;
    f.sup->start_initial();
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    const pid_t first = f.sup->child_pid();

    // A probe is in flight when the child dies.
    REQUIRE(f.wait_probe());
    ::kill(first, SIGKILL);
    REQUIRE(f.run_until(
        [&] { return f.sup->state() == ChildState::starting && f.sup->child_pid() != first; }));
    // The stale probe answers SERVING: the new child must stay starting.
    f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::starting);
    // Its own probe decides.
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);
}

TEST_CASE("supervisor: first start never healthy before startup_timeout is fatal 69",
          "[unit][supervisor]") {
    Fixture f;
    f.sup.reset();
    f.config.health.startup_timeout = 300ms;
    auto p = std::make_unique<FakeProber>();
    f.prober = p.get();
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, std::move(p));
    std::string reason;
    f.sup->set_fatal_handler([&](int code, const std::string& r) {
        f.fatal = code;
        reason = r;
    });
    f.sup->start_initial();
    // Every probe is refused.
    REQUIRE(f.run_until([&] {
        while (!f.prober->pending.empty())
            f.prober->answer(HealthResult::connection_refused);
        return f.fatal.has_value();
    }));
    CHECK(*f.fatal == 69);
    CHECK(reason.find("not healthy within startup_timeout 300ms") != std::string::npos);
    CHECK(reason.find("connection refused") != std::string::npos);
}

TEST_CASE("supervisor: a reload that turns health off during dump_wait does not cancel the kill",
          "[unit][supervisor]") {
    Fixture f;
    f.config.health.dump_signal = SIGCONT; // harmless to sleep(1): it keeps running
    f.config.health.dump_wait = 300ms;
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, [&] {
        auto p = std::make_unique<FakeProber>();
        f.prober = p.get();
        return p;
    }());
    f.sup->start_initial();
    const pid_t pid = f.sup->child_pid();
    REQUIRE(pid > 0);
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    for (int i = 0; i < 3; ++i) {
        REQUIRE(f.wait_probe());
        f.prober->answer(HealthResult::deadline_exceeded);
    }
    // Threshold reached: SIGCONT sent, SIGKILL due after dump_wait. Now health goes off.
    Config off = f.config;
    off.health.kind = HealthKind::none;
    CHECK_FALSE(f.sup->reload(off));
    // The hung child is still killed and replaced.
    REQUIRE(f.run_until([&] { return f.sup->child_pid() != pid && f.sup->child_pid() != 0; }));
    auto st = f.sup->status();
    REQUIRE(st.last_exit.has_value());
    CHECK(st.last_exit->kind == ExitStatus::Kind::signaled);
    CHECK(st.last_exit->value == SIGKILL);
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::running; }));

    // Health on again: the new child is probed again.
    f.prober->pending.clear();
    CHECK_FALSE(f.sup->reload(f.config));
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);
}

// Issue 10, target 5: probes go out every interval whether or not the last one answered,
// each with its own deadline, so a hung child is killed within
// timeout + (failure_threshold - 1) x interval.
TEST_CASE("supervisor: a probe starts every interval while earlier ones are unanswered",
          "[unit][supervisor][probe]") {
    Fixture f;
    f.config.health.timeout = 20s; // no deadline passes during the test
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, [&] {
        auto p = std::make_unique<FakeProber>();
        f.prober = p.get();
        return p;
    }());
    f.sup->start_initial();
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    // Nobody answers: the next probes still start.
    REQUIRE(f.run_until([&] { return f.prober->pending.size() >= 3; }));
    CHECK(f.sup->state() == ChildState::running);
    while (!f.prober->pending.empty())
        f.prober->answer(HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);
    CHECK(f.sup->status().consecutive_health_failures == 0);
}

TEST_CASE("supervisor: an unanswered probe fails at its deadline, and a hung child is killed",
          "[unit][supervisor][probe]") {
    Fixture f;
    f.config.health.timeout = 200ms;
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, [&] {
        auto p = std::make_unique<FakeProber>();
        f.prober = p.get();
        return p;
    }());
    f.sup->start_initial();
    const pid_t pid = f.sup->child_pid();
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    // The prober never answers again (a hung child whose calls never come back): the
    // supervisor's own deadlines count the failures.
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::unhealthy; }));
    CHECK(f.sup->status().last_health_result.find("deadline exceeded") != std::string::npos);
    REQUIRE(f.run_until([&] { return f.sup->child_pid() != pid && f.sup->child_pid() != 0; }));
    auto st = f.sup->status();
    REQUIRE(st.last_exit.has_value());
    CHECK(st.last_exit->kind == ExitStatus::Kind::signaled);
    CHECK(st.last_exit->value == SIGKILL);
}

TEST_CASE("supervisor: late and out-of-order answers neither reset nor double-count",
          "[unit][supervisor][probe]") {
    Fixture f;
    f.config.health.interval = 20ms;
    f.config.health.timeout = 300ms;
    f.config.health.failure_threshold = 1000; // count, never kill
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, [&] {
        auto p = std::make_unique<FakeProber>();
        f.prober = p.get();
        return p;
    }());
    f.sup->start_initial();
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    // The oldest unanswered probe passes its deadline: one failure.
    REQUIRE(f.run_until([&] { return f.sup->status().consecutive_health_failures >= 1; }));
    REQUIRE(f.sup->state() == ChildState::unhealthy);
    // Its answer comes late: SERVING, but stale, so the count stays.
    const unsigned failures = f.sup->status().consecutive_health_failures;
    f.prober->answer_at(0, HealthResult::serving);
    CHECK(f.sup->state() == ChildState::unhealthy);
    CHECK(f.sup->status().consecutive_health_failures == failures);
    // Two newer probes are still within their deadlines; the newer answers first.
    REQUIRE(f.run_until([&] { return f.prober->pending.size() >= 3; }));
    const std::size_t n = f.prober->pending.size();
    f.prober->answer_at(n - 1, HealthResult::serving);
    CHECK(f.sup->state() == ChildState::running);
    CHECK(f.sup->status().consecutive_health_failures == 0);
    // The older one answers after it: stale, it counts nothing.
    f.prober->answer_at(n - 2, HealthResult::not_serving);
    CHECK(f.sup->state() == ChildState::running);
    CHECK(f.sup->status().consecutive_health_failures == 0);
}

TEST_CASE("supervisor: a child stopped by a signal is probed at once",
          "[unit][supervisor][probe]") {
    Fixture f;
    f.config.health.interval = std::chrono::hours(1); // no probe on the schedule
    f.config.health.timeout = 20s;
    f.sup = std::make_unique<Supervisor>(f.io, f.reaper, f.config, [&] {
        auto p = std::make_unique<FakeProber>();
        f.prober = p.get();
        return p;
    }());
    f.sup->start_initial();
    const pid_t pid = f.sup->child_pid();
    REQUIRE(f.wait_probe());
    f.prober->answer(HealthResult::serving);
    REQUIRE(f.sup->state() == ChildState::running);
    REQUIRE(f.prober->pending.empty());
    // SIGCHLD (CLD_STOPPED) says the child can answer nothing: the hang's clock starts now,
    // not at the next tick an hour away.
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    REQUIRE(f.wait_probe());
    CHECK(f.prober->pending.size() == 1);
    CHECK(f.sup->child_pid() == pid); // stopped, not reaped
    ::kill(pid, SIGCONT);
}
