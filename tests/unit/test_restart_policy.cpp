#include "vigil/restart_policy.hpp"

#include <catch2/catch.hpp>

#include <csignal>

using namespace vigil;
using namespace std::chrono_literals;

TEST_CASE("backoff_delay doubles from initial and stops at max", "[unit]") {
    struct Row {
        unsigned attempt;
        Duration initial, max, expected;
    };
    const Row rows[] = {
        {0, 100ms, 30s, 0ms},     {1, 100ms, 30s, 100ms},   {2, 100ms, 30s, 200ms},
        {3, 100ms, 30s, 400ms},   {9, 100ms, 30s, 25600ms}, {10, 100ms, 30s, 30s},
        {11, 100ms, 30s, 30s},    {500, 100ms, 30s, 30s},   {1, 300ms, 600ms, 300ms},
        {2, 300ms, 600ms, 600ms}, {3, 300ms, 600ms, 600ms}, {1, 5s, 1s, 1s},
    };
    for (const auto& r : rows) {
        INFO("attempt " << r.attempt);
        CHECK(backoff_delay(r.attempt, r.initial, r.max) == r.expected);
    }
}

TEST_CASE("should_restart follows the policy", "[unit]") {
    const ExitStatus clean{ExitStatus::Kind::exited, 0};
    const ExitStatus code3{ExitStatus::Kind::exited, 3};
    const ExitStatus killed{ExitStatus::Kind::signaled, SIGKILL};
    const ExitStatus unknown{};
    struct Row {
        RestartPolicy policy;
        ExitStatus status;
        bool expected;
    };
    const Row rows[] = {
        {RestartPolicy::always, clean, true},      {RestartPolicy::always, killed, true},
        {RestartPolicy::on_failure, clean, false}, {RestartPolicy::on_failure, code3, true},
        {RestartPolicy::on_failure, killed, true}, {RestartPolicy::on_failure, unknown, true},
        {RestartPolicy::never, code3, false},      {RestartPolicy::never, clean, false},
    };
    for (const auto& r : rows) {
        INFO(to_string(r.policy) << " " << describe(r.status));
        CHECK(should_restart(r.policy, r.status) == r.expected);
    }
}

TEST_CASE("ExitStatus decodes wait statuses", "[unit]") {
    auto exited = ExitStatus::from_wait_status(3 << 8);
    CHECK(exited.kind == ExitStatus::Kind::exited);
    CHECK(exited.value == 3);
    CHECK(describe(exited) == "exit code 3");
    auto killed = ExitStatus::from_wait_status(SIGKILL);
    CHECK(killed.kind == ExitStatus::Kind::signaled);
    CHECK(describe(killed) == "killed by SIGKILL");
    CHECK(ExitStatus::from_wait_status(0).success());
}

TEST_CASE("StartLimiter allows burst starts per interval", "[unit]") {
    StartLimiter lim;
    const auto t0 = Clock::time_point{} + 1h;
    // burst 3 within 10s
    CHECK(lim.try_start(t0, 3, 10s));
    CHECK(lim.try_start(t0 + 1s, 3, 10s));
    CHECK(lim.try_start(t0 + 2s, 3, 10s));
    CHECK_FALSE(lim.try_start(t0 + 3s, 3, 10s)); // 4th within 10s
    CHECK(lim.recent_starts() == 3);
    CHECK_FALSE(lim.try_start(t0 + 9999ms, 3, 10s));
    CHECK(lim.try_start(t0 + 10s, 3, 10s)); // the first has left the window
    CHECK_FALSE(lim.try_start(t0 + 10s, 3, 10s));
    CHECK(lim.try_start(t0 + 12s, 3, 10s)); // t0+1s and t0+2s have left
    lim.reset();
    CHECK(lim.recent_starts() == 0);
    CHECK(lim.try_start(t0 + 12s, 1, 10s));
    CHECK_FALSE(lim.try_start(t0 + 13s, 1, 10s));
}
