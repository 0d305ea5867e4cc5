// What the loop-driven unit tests share: a prober whose answers the test gives, and a
// loop turned until a condition holds (with a deadline, never a fixed sleep).
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/health.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace vigil::test {

class FakeProber final : public HealthProber {
public:
    void reset() override { ++resets; }
    void probe(Callback cb) override { pending.push_back(std::move(cb)); }
    // Answers the unanswered probe at `i` (0 = the oldest), in or out of order.
    void answer_at(std::size_t i, HealthResult r) {
        REQUIRE(i < pending.size());
        auto cb = std::move(pending[i]);
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        cb(HealthOutcome{r, {}});
    }
    // Answers the oldest unanswered probe.
    void answer(HealthResult r) { answer_at(0, r); }
    std::vector<Callback> pending;
    int resets = 0;
};

// Turns `io` until `pred` holds, or `deadline` passes (false then).
inline bool run_io_until(asio::io_context& io, const std::function<bool()>& pred,
                         std::chrono::seconds deadline = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        io.run_one_for(std::chrono::milliseconds(5));
    }
    return true;
}

// A supervisor's config around a real /bin/sleep child in `dir` (state and root below it).
inline Config sleep_child_config(const std::string& dir) {
    Config config;
    config.daemon.state_dir = dir + "/state";
    config.daemon.root_dir = dir + "/root";
    config.child.binary = "/bin/sleep";
    config.child.args = {"1000"};
    config.child.config_file = "";
    config.child.log_level_flag = "";
    return config;
}

} // namespace vigil::test
