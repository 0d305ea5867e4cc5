// The supervisor: the state machine that keeps one child alive.
//
// Loop thread only: every public function and every callback runs on the io_context's
// one thread. The supervisor owns the child handle, its timers and its records.
//
// States (DESIGN.md): stopped -> starting -> running -> unhealthy -> backoff -> starting
// ...; stopping -> stopped; failed. set_state() is the only writer of state_: it bumps the
// generation (so queued timer handlers of the old state recognise themselves as stale),
// logs "state A -> B (reason)" and tells the observer.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/process.hpp"
#include "vigil/reaper.hpp"
#include "vigil/restart_policy.hpp"
#include "vigil/unique_fd.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace vigil {

enum class ChildState { stopped, starting, running, unhealthy, backoff, stopping, failed };
std::string_view to_string(ChildState s);

struct StateChange {
    ChildState from;
    ChildState to;
    std::string reason;
    pid_t pid; // 0 when no child
    unsigned restart_count;
};

class Supervisor {
public:
    using StateObserver = std::function<void(const StateChange&)>;
    // vigild must exit with `code` (69: the child never came up on vigild's first start).
    using FatalHandler = std::function<void(int code, const std::string& reason)>;

    Supervisor(asio::io_context& io, Reaper& reaper, Config config);
    ~Supervisor();

    void set_state_observer(StateObserver o) { observer_ = std::move(o); }
    void set_fatal_handler(FatalHandler h) { fatal_ = std::move(h); }

    // vigild's start: adopt the recorded child if it is provably ours, else spawn one.
    void start_initial();
    // Stops the child in order (stop_signal, SIGKILL after stop_timeout), removes its
    // records, then calls `done`. Safe in every state.
    void stop(std::function<void()> done);
    // Applies a new configuration: restart, stop and OOM settings at once; a change to
    // what the child runs (binary, args, env, child config, flags, output) restarts it; a
    // `failed` child is started again. state_dir and root_dir stay as vigild started with
    // them. Returns true when the child is (re)started because of the reload.
    bool reload(const Config& next);
    // Forgets the child without signalling it; its records stay for the next vigild.
    void detach();

    ChildState state() const { return state_; }
    pid_t child_pid() const;
    bool child_adopted() const;
    unsigned restart_count() const { return restart_count_; }
    const Config& config() const { return config_; }

private:
    struct Child;

    void set_state(ChildState next, std::string reason);
    // Counts the start against the start limit (-> failed), then spawns.
    void start_counted(std::string reason);
    void enter_starting_fresh(std::string reason);
    void enter_running(std::string reason);
    void enter_backoff(Duration delay, std::string reason);
    void enter_stopping();
    void enter_stopped(std::string reason);
    void enter_failed(std::string reason);

    void on_child_exit(const ExitStatus& status);
    void on_backoff_expired();
    void on_stop_timeout();
    void on_oom_follow_tick();

    bool adopt(std::string& why_not);
    Status write_child_config();
    void watch_adopted_exit();
    // Reads the target (vigild's own score for inherit), writes it if `write`, logs the
    // actual score read back.
    void apply_oom_score(bool write);
    void start_oom_follow();
    void schedule_restart(const ExitStatus& status, std::string reason);
    void signal_child(int sig, std::string_view why);
    std::vector<std::string> child_argv() const;

    asio::io_context& io_;
    Reaper& reaper_;
    Config config_;
    StateObserver observer_;
    FatalHandler fatal_;

    ChildState state_ = ChildState::stopped;
    unsigned generation_ = 0;
    std::unique_ptr<Child> child_;
    std::function<void()> stop_done_;
    bool restart_after_stop_ = false; // a reload changed the child: start it once stopped

    bool ever_healthy_ = false; // the first start has succeeded: failures never exit vigild
    unsigned restart_count_ = 0;
    unsigned backoff_attempt_ = 0;
    StartLimiter limiter_;
    std::optional<ExitStatus> last_exit_;
    int last_applied_oom_ = 0;
    unsigned oom_generation_ = 0;

    asio::steady_timer backoff_timer_;
    asio::steady_timer stop_timer_;
    asio::steady_timer oom_timer_;
};

} // namespace vigil
