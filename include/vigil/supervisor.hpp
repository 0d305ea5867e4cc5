// The supervisor: the state machine that keeps one child alive and healthy.
//
// Loop thread only: every public function and every callback runs on the io_context's
// one thread. The supervisor owns the child handle, its timers, its health prober and its
// records.
//
// States (DESIGN.md): stopped -> starting -> running -> unhealthy -> backoff -> starting
// ...; stopping -> stopped; failed. set_state() is the only writer of state_: it bumps the
// generation (so queued timer handlers of the old state recognise themselves as stale),
// cancels the timers the new state does not use, logs "state A -> B (reason)" and tells
// the observers.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/exec_env.hpp"
#include "vigil/health.hpp"
#include "vigil/incident.hpp"
#include "vigil/loop_lag.hpp"
#include "vigil/oom_kill.hpp"
#include "vigil/operator_hold.hpp"
#include "vigil/output_capture.hpp"
#include "vigil/probe_scheduler.hpp"
#include "vigil/probers.hpp"
#include "vigil/process.hpp"
#include "vigil/reaper.hpp"
#include "vigil/restart_policy.hpp"
#include "vigil/state_record.hpp"
#include "vigil/unique_fd.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
    // Every event of the stream (seq and time are filled in by the receiver).
    using EventSink = std::function<void(Event)>;
    // vigild must exit with `code` (69: the child never came up on vigild's first start).
    using FatalHandler = std::function<void(int code, const std::string& reason)>;

    // `prober` = nullptr: a gRPC prober is made when [health] kind is grpc.
    Supervisor(asio::io_context& io, Reaper& reaper, Config config,
               std::unique_ptr<HealthProber> prober = nullptr);
    ~Supervisor();

    void set_state_observer(StateObserver o) { observer_ = std::move(o); }
    void set_event_sink(EventSink s) { events_ = std::move(s); }
    // Every health check's outcome and how long it took (for the metrics).
    using ProbeObserver = std::function<void(const HealthOutcome&, Duration)>;
    void set_probe_observer(ProbeObserver o) { probe_observer_ = std::move(o); }
    // Incident reports ([incidents]): the newest first, and one's text.
    const IncidentStore& incidents() const { return incidents_; }
    void set_fatal_handler(FatalHandler h) { fatal_ = std::move(h); }

    // vigild's start: adopt the recorded child if it is provably ours, else spawn one. The
    // child must be healthy within startup_timeout from now, or FatalHandler(69) is called.
    void start_initial();
    // Stops the child in order (stop_signal, SIGKILL after `timeout`, default
    // stop_timeout), removes its records, then calls `done`. Safe in every state.
    void stop(std::function<void()> done, std::optional<Duration> timeout = std::nullopt);
    // Forgets the child without signalling it; its records stay for the next vigild.
    void detach();

    // Applies a new configuration: restart, stop, health and OOM settings at once; a change
    // to what the child runs (binary, args, env, child config, flags, output) restarts it;
    // a `failed` child is started again. state_dir and root_dir stay as vigild started with
    // them. Returns true when the child is (re)started because of the reload.
    bool reload(const Config& next);

    // Control commands (see ControlBackend for their contracts).
    void start_command(ControlBackend::Reply reply);
    // A stop by the operator: the child stays stopped (the hold is recorded in the state
    // dir and survives vigild's death) until start_command, until `hold_for` runs out
    // (then it is started), or until clear_hold (vigild's clean stop).
    void stop_command(std::optional<Duration> timeout, ControlBackend::Reply reply,
                      std::optional<Duration> hold_for = std::nullopt, std::string reason = {});
    void clear_hold();
    bool held() const { return hold_.has_value(); }
    void restart_command(ControlBackend::Reply reply);
    CommandOutcome signal_command(int sig);
    CommandOutcome set_oom_score_command(OomScore score);
    StatusSnapshot status() const;
    // Only what the metrics show (state, pid, start time, restarts, the OOM score read
    // back): cheap enough for every event, unlike status() with its /proc reads.
    StatusSnapshot brief_status() const;

    OutputCapture& output() { return output_; }
    ChildState state() const { return state_; }
    pid_t child_pid() const;
    bool child_adopted() const;
    unsigned restart_count() const { return restart_count_; }
    const Config& config() const { return config_; }
    // The configuration the last rollback turned away, if any.
    const std::optional<Config>& rejected_config() const { return rejected_; }
    // The lateness of the loop's timers (see loop_lag.hpp): the supervisor's timers record
    // into it, and so may the daemon's (the watchdog); status() reports it.
    LoopLag& loop_lag() { return loop_lag_; }

private:
    struct Child;

    bool health_enabled() const;
    void set_state(ChildState next, std::string reason);
    void emit(Event e);
    // Counts the start against the start limit (-> failed), then spawns.
    void start_counted(std::string reason);
    // Counts a start at `now`; false (and state failed) when the limit is hit.
    bool admit_start(Clock::time_point now, const std::string& reason);
    void enter_starting_fresh(std::string reason);
    void begin_health_or_run(const std::string& how);
    void enter_running(std::string reason);
    void enter_backoff(Duration delay, std::string reason);
    void enter_stopping(std::optional<Duration> timeout = std::nullopt);
    void enter_stopped(std::string reason);
    void enter_failed(std::string reason);

    void on_child_exit(const ExitStatus& status);
    void recheck_oom_kill(pid_t pid);
    // The reloaded configuration's first child failed to come up: go back to the one
    // before (true), if there is one to go back to.
    bool roll_back(const std::string& why);
    void on_backoff_expired();
    void on_stop_timeout();
    void on_startup_timeout();
    void on_first_start_deadline();
    void on_probe_result(const HealthOutcome& outcome);
    void on_oom_follow_tick();

    bool adopt(std::string& why_not);
    Status write_child_config();
    // Watches the child's pidfd: the exit notice of an adopted child, and a safety net
    // beside SIGCHLD for a spawned one.
    void watch_exit();
    // Records the token of the next spawn (child.next) unless the record on disk already
    // names it and the configured executable.
    Status prepare_next_spawn();
    // Reads the target (vigild's own score for inherit), writes it if `write`, logs the
    // actual score read back. Returns the write's failure, if any.
    Status apply_oom_score(bool write);
    void start_oom_follow();
    void set_hold(std::optional<Duration> hold_for, std::string reason);
    void arm_hold_expiry();
    void on_hold_expired();
    void kill_for(std::string reason);
    void schedule_restart(const ExitStatus& status, std::string reason);
    void fail_start(std::string reason);
    void signal_child(int sig, std::string_view why);
    void answer_start_replies(const CommandOutcome& outcome);
    std::vector<std::string> child_argv() const;

    asio::io_context& io_;
    Reaper& reaper_;
    Config config_;
    std::string instance_; // the state dir's canonical path: what records name
    NextSpawn next_;       // the token the next spawned child carries
    bool next_written_ = false;
    std::optional<OperatorHold> hold_; // the operator's stop, while it lasts
    // [restart] rollback: the configuration before a reload that changed the child, kept
    // until the new child is healthy; the one a rollback turned away, and why.
    std::optional<Config> rollback_to_;
    // Incident reports: the last checks, the incident being gathered (a hang kill waits
    // for the death it causes: one incident, one report) and the store.
    ProbeObserver probe_observer_;
    std::deque<ProbeRecord> recent_probes_;
    std::optional<Incident> open_incident_;
    std::uint64_t incident_output_from_ = 0;
    IncidentStore incidents_;
    struct PendingIncident {
        Incident incident;
        std::uint64_t output_from;
        Clock::time_point due;
    };
    std::deque<PendingIncident> pending_incidents_;
    void open_incident(std::string kind, std::string reason);
    void close_incident(const ExitStatus& status, std::string reason);
    void arm_incident_timer();
    void flush_incidents(bool all);
    void write_incident(Incident in, std::uint64_t output_from);
    std::optional<Config> rejected_;
    std::string rollback_note_;
    std::optional<SystemTime> rollback_at_;
    unsigned hold_generation_ = 0;
    SystemTime next_start_at_{}; // backoff: when the restart is due
    std::unique_ptr<HealthProber> prober_;
    bool prober_injected_ = false;
    void reconfigure_prober();
    std::unique_ptr<HealthProber> new_prober();
    NotifyProber* notify_prober() const;
    OutputCapture output_;
    KmsgOomWatcher kmsg_; // names a SIGKILL that came from the kernel's OOM killer
    StateObserver observer_;
    EventSink events_;
    FatalHandler fatal_;

    ChildState state_ = ChildState::stopped;
    std::string state_reason_;
    SystemTime state_since_ = std::chrono::system_clock::now();
    unsigned generation_ = 0;
    std::unique_ptr<Child> child_;
    std::function<void()> stop_done_;
    bool restart_after_stop_ = false;                  // a reload or restart: start once stopped
    std::vector<ControlBackend::Reply> start_replies_; // answered when a child is spawned

    // vigild's first start: until the child is first healthy, failing to come up within
    // startup_timeout (from vigild's start) makes vigild exit 69.
    bool first_start_pending_ = false;
    std::string last_failure_; // the last reason the child did not come up
    unsigned restart_count_ = 0;
    unsigned backoff_attempt_ = 0;
    StartLimiter limiter_;
    std::optional<ExitStatus> last_exit_;
    std::optional<SystemTime> last_exit_at_;
    pid_t last_exit_pid_ = 0;
    int last_applied_oom_ = 0;
    unsigned oom_generation_ = 0;
    std::chrono::steady_clock::time_point last_oom_check_{}; // the last on_oom_follow_tick

    // Health: the scheduler decides which results there are; this counts them.
    unsigned consecutive_failures_ = 0;
    std::optional<HealthOutcome> last_health_;
    std::optional<SystemTime> last_health_at_;

    asio::steady_timer backoff_timer_;
    asio::steady_timer stop_timer_;
    asio::steady_timer oom_timer_;
    asio::steady_timer startup_timer_;
    asio::steady_timer first_start_timer_;
    asio::steady_timer dump_timer_;
    asio::steady_timer hold_timer_;
    asio::steady_timer oom_kill_timer_; // a second look at the kernel log after a SIGKILL
    asio::steady_timer incident_timer_; // the next pending incident report is due
    LoopLag loop_lag_;
    // [child] user and groups, resolved when the configuration is loaded or reloaded
    // (resolve_identity), never per start: a name service may block the loop.
    std::optional<ChildIdentity> identity_;
    std::string identity_error_; // why identity_ is empty: each start fails with it
    void resolve_identity();
    // Declared last, destroyed first: it holds a pointer to prober_.
    ProbeScheduler probes_;
};

} // namespace vigil
