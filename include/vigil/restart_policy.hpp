// When to restart the child and how long to wait first: pure functions, no clocks read.
#pragma once

#include <csignal>

#include "vigil/config.hpp"
#include "vigil/oom_kill.hpp"

#include <chrono>
#include <deque>
#include <string>

namespace vigil {

using Clock = std::chrono::steady_clock;

// How the child ended, as waitpid reported it (or unknown for an adopted child).
struct ExitStatus {
    enum class Kind { exited, signaled, unknown };
    ExitStatus() = default;
    ExitStatus(Kind k, int v) : kind(k), value(v) {}
    Kind kind = Kind::unknown;
    int value = 0; // exit code or signal number
    // A SIGKILL from the kernel's OOM killer (its record in the kernel log named the pid).
    std::optional<OomKill> oom_kill;

    static ExitStatus from_wait_status(int status);
    // From waitid(2)'s si_code/si_status.
    static ExitStatus from_siginfo(const siginfo_t& info);
    bool success() const { return kind == Kind::exited && value == 0; }
};
// "exit code 3", "killed by SIGKILL", "killed by the OOM killer, anon-rss 1.2 GiB,
// oom_score_adj 500", "exit status unknown (...)".
std::string describe(const ExitStatus& s);

// Whether the policy restarts a child that ended so. `requested` = vigild asked it to stop.
bool should_restart(RestartPolicy policy, const ExitStatus& status);

// The delay before restart number `attempt` since the last reset (0-based):
// attempt 0 -> 0 (at once), 1 -> initial, 2 -> 2*initial, ... capped at max.
Duration backoff_delay(unsigned attempt, Duration initial, Duration max);

// Counts starts in a sliding window: more than `burst` starts within `interval` means the
// child is failing and must not be started again (state `failed`).
class StartLimiter {
public:
    // Records a start at `now` if allowed; false means the limit is hit (not recorded).
    bool try_start(Clock::time_point now, int burst, Duration interval);
    void reset() { starts_.clear(); }
    size_t recent_starts() const { return starts_.size(); }

private:
    std::deque<Clock::time_point> starts_;
};

} // namespace vigil
