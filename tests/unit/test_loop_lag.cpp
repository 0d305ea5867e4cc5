// LoopLag: the bounded record of how late the loop runs its timers.
#include "vigil/loop_lag.hpp"

#include <catch2/catch.hpp>

using namespace vigil;
using namespace std::chrono_literals;

TEST_CASE("loop lag: percentiles over a bounded window of the latest samples", "[unit][loop-lag]") {
    LoopLag lag;
    CHECK(lag.summary().samples == 0);
    CHECK(lag.summary().window == 0);
    for (std::uint64_t i = 1; i <= 100; ++i)
        lag.record_us(i);
    auto s = lag.summary();
    CHECK(s.samples == 100);
    CHECK(s.window == 100);
    CHECK(s.p50_us == 50);
    CHECK(s.p99_us == 99);
    CHECK(s.max_us == 100);
    CHECK(s.max_ever_us == 100);

    // A timer handled before its expiry (clock granularity) counts as on time.
    const auto now = LoopLag::Clock::now();
    lag.record(now + 1ms, now);
    CHECK(lag.summary().samples == 101);

    // The window keeps only the latest kLoopLagWindow samples; the all-time max stays.
    for (std::size_t i = 0; i < kLoopLagWindow; ++i)
        lag.record_us(7);
    s = lag.summary();
    CHECK(s.samples == 101 + kLoopLagWindow);
    CHECK(s.window == kLoopLagWindow);
    CHECK(s.p50_us == 7);
    CHECK(s.p99_us == 7);
    CHECK(s.max_us == 7);
    CHECK(s.max_ever_us == 100);

    const auto t = LoopLag::Clock::now();
    lag.record(t, t + 3ms);
    CHECK(lag.summary().max_us == 3000);
}
