#include "vigil/restart_policy.hpp"

#include <fmt/format.h>

#include <sys/wait.h>

namespace vigil {

ExitStatus ExitStatus::from_wait_status(int status) {
    if (WIFEXITED(status))
        return {Kind::exited, WEXITSTATUS(status)};
    if (WIFSIGNALED(status))
        return {Kind::signaled, WTERMSIG(status)};
    return {};
}

ExitStatus ExitStatus::from_siginfo(const siginfo_t& info) {
    switch (info.si_code) {
    case CLD_EXITED:
        return {Kind::exited, info.si_status};
    case CLD_KILLED:
    case CLD_DUMPED:
        return {Kind::signaled, info.si_status};
    default:
        return {};
    }
}

std::string describe(const ExitStatus& s) {
    switch (s.kind) {
    case ExitStatus::Kind::exited:
        return fmt::format("exit code {}", s.value);
    case ExitStatus::Kind::signaled:
        if (s.oom_kill)
            return fmt::format("killed by the OOM killer{}, anon-rss {}, oom_score_adj {}",
                               s.oom_kill->memcg ? " (memory cgroup limit)" : "",
                               format_kib(s.oom_kill->anon_rss_kb), s.oom_kill->oom_score_adj);
        return fmt::format("killed by {}", signal_name(s.value));
    case ExitStatus::Kind::unknown:
        return "exit status unknown (adopted, not vigild's own child)";
    }
    return "?";
}

bool should_restart(RestartPolicy policy, const ExitStatus& status) {
    switch (policy) {
    case RestartPolicy::always:
        return true;
    case RestartPolicy::on_failure:
        return !status.success();
    case RestartPolicy::never:
        return false;
    }
    return false;
}

Duration backoff_delay(unsigned attempt, Duration initial, Duration max) {
    if (attempt == 0)
        return Duration::zero();
    Duration d = initial;
    for (unsigned i = 1; i < attempt && d < max; ++i)
        d *= 2;
    return std::min(d, max);
}

bool StartLimiter::try_start(Clock::time_point now, int burst, Duration interval) {
    while (!starts_.empty() && now - starts_.front() >= interval)
        starts_.pop_front();
    if (static_cast<int>(starts_.size()) >= burst)
        return false;
    starts_.push_back(now);
    return true;
}

} // namespace vigil
