// How late the event loop runs the timers it already has: a timer handler that runs at
// `now` for a deadline of `expiry` was kept waiting `now - expiry` by whatever the loop was
// doing. No timer is added for this (no extra wakeups): the probe, back-off, OOM-follow and
// watchdog timers each record their lateness here, and status reports p50/p99/max.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace vigil {

// The last kLoopLagWindow samples (a ring: memory stays bounded), plus the all-time count
// and maximum.
inline constexpr std::size_t kLoopLagWindow = 1024;

struct LoopLagSummary {
    std::uint64_t samples = 0; // all recorded since vigild started
    std::uint32_t window = 0;  // how many of the latest samples p50/p99 describe
    std::uint64_t p50_us = 0;
    std::uint64_t p99_us = 0;
    std::uint64_t max_us = 0;      // over the window
    std::uint64_t max_ever_us = 0; // since vigild started
};

class LoopLag {
public:
    using Clock = std::chrono::steady_clock;

    // A timer due at `expiry` is being handled at `now`; early (clock skew) counts as 0.
    void record(Clock::time_point expiry, Clock::time_point now = Clock::now());
    void record_us(std::uint64_t lateness_us);
    LoopLagSummary summary() const;

private:
    std::array<std::uint32_t, kLoopLagWindow> ring_{};
    std::uint64_t count_ = 0;
    std::uint64_t max_ever_us_ = 0;
};

} // namespace vigil
