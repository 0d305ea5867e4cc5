#include "vigil/loop_lag.hpp"

#include <algorithm>
#include <limits>
#include <vector>

namespace vigil {

void LoopLag::record(Clock::time_point expiry, Clock::time_point now) {
    const auto late = now > expiry ? now - expiry : Clock::duration::zero();
    record_us(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(late).count()));
}

void LoopLag::record_us(std::uint64_t lateness_us) {
    constexpr std::uint64_t cap = std::numeric_limits<std::uint32_t>::max();
    ring_[count_ % kLoopLagWindow] = static_cast<std::uint32_t>(std::min(lateness_us, cap));
    ++count_;
    max_ever_us_ = std::max(max_ever_us_, lateness_us);
}

LoopLagSummary LoopLag::summary() const {
    LoopLagSummary s;
    s.samples = count_;
    s.max_ever_us = max_ever_us_;
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(count_, kLoopLagWindow));
    s.window = static_cast<std::uint32_t>(n);
    if (n == 0)
        return s;
    std::vector<std::uint32_t> v(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(n));
    // Nearest rank: the smallest sample with at least p% of the window at or below it.
    auto rank = [n](unsigned pct) { return (n * pct + 99) / 100 - 1; };
    auto at = [&v](std::size_t k) {
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
        return static_cast<std::uint64_t>(v[k]);
    };
    s.p50_us = at(rank(50));
    s.p99_us = at(rank(99));
    s.max_us = *std::max_element(v.begin(), v.end());
    return s;
}

} // namespace vigil
