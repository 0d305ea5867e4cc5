// What the control API can ask of vigild: the seam between the gRPC control server and
// the supervisor.
//
// Threading: every ControlBackend function is called on the loop thread (the control
// server posts a closure into the io_context and calls it from there), and every Reply
// and subscriber callback is invoked on the loop thread too. A subscriber callback must
// not block: it copies the event into its own bounded queue and returns.
#pragma once

#include "vigil/config.hpp"
#include "vigil/loop_lag.hpp"
#include "vigil/restart_policy.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

using SystemTime = std::chrono::system_clock::time_point;

// The answer to a command. `code` maps to a gRPC status code.
struct CommandOutcome {
    enum class Code { ok, invalid_argument, failed_precondition, internal };
    Code code = Code::ok;
    std::string message; // what happened, or why not

    static CommandOutcome success(std::string m = {}) { return {Code::ok, std::move(m)}; }
    static CommandOutcome precondition(std::string m) {
        return {Code::failed_precondition, std::move(m)};
    }
    static CommandOutcome invalid(std::string m) { return {Code::invalid_argument, std::move(m)}; }
    bool ok() const { return code == Code::ok; }
};

struct StatusSnapshot {
    std::string state; // stopped | starting | running | unhealthy | backoff | stopping | failed
    std::string state_reason; // why the last transition happened
    pid_t pid = 0;            // 0 when no child
    bool adopted = false;
    std::optional<SystemTime> started_at; // the child's start (from /proc for adopted ones)
    std::optional<SystemTime> state_since;
    unsigned restart_count = 0;
    std::optional<ExitStatus> last_exit;
    std::optional<SystemTime> last_exit_at;
    // Health (kind "none": health_enabled false and the rest empty).
    bool health_enabled = false;
    unsigned consecutive_health_failures = 0;
    std::optional<SystemTime> last_health_check;
    std::string last_health_result; // "SERVING", "NOT_SERVING", "deadline exceeded", ...
    OomScore oom_configured;
    std::optional<int> oom_actual; // read back from /proc/PID/oom_score_adj
    std::string child_binary;
    std::vector<std::string> child_args; // the full argv vigild execs
    std::string vigild_version;
    pid_t vigild_pid = 0;
    std::string output_mode; // inherit | capture
    // What the child runs with (read back from /proc for a live child).
    std::string child_user;                                        // "nobody (65534)", "root (0)"
    std::string child_working_directory;                           // its cwd
    std::vector<std::pair<std::string, std::string>> child_limits; // [child.limits] keys: value
    std::optional<SystemTime> next_start_at; // backoff: when the next start comes
    // The operator's hold (vigilctl stop), while it lasts.
    bool held = false;
    std::optional<SystemTime> held_since;
    std::optional<SystemTime> held_until;
    std::string hold_reason;
    // The last rollback of a reload ([restart] rollback): why ("" if none), and when.
    std::string rollback;
    std::optional<SystemTime> rolled_back_at;
    // The newest incident report ([incidents]): its id and reason; "" if none.
    std::string latest_incident;
    std::string latest_incident_reason;
    // [health] kind = "notify": the child's last STATUS= ("" if none).
    std::string notify_status;
    LoopLagSummary loop_lag; // how late the loop runs its timers
};

// One entry of the event stream. `seq` increases by one per event, from 1.
struct Event {
    enum class Kind { state, exit, health, oom, reload, signal };
    std::uint64_t seq = 0;
    SystemTime time;
    Kind kind = Kind::state;
    std::string message;            // a human sentence, e.g. "state running -> backoff (...)"
    std::string from_state;         // kind state
    std::string to_state;           // kind state
    pid_t pid = 0;                  // the child concerned, if any
    std::optional<ExitStatus> exit; // kind exit
    std::string health_result;      // kind health: the new outcome
    std::optional<int> oom_score;   // kind oom: the score now in effect
};
std::string_view to_string(Event::Kind k);

// One captured line of the child's output ([child] output = "capture").
struct LogLine {
    std::uint64_t seq = 0;
    SystemTime time;
    pid_t pid = 0;
    std::string stream; // "stdout" | "stderr"
    std::string text;   // without the newline
};

struct ReloadOutcome {
    CommandOutcome outcome;
    bool child_restarted = false;
};

class ControlBackend {
public:
    using Reply = std::function<void(CommandOutcome)>;
    using Subscription = std::uint64_t; // 0 = none

    virtual ~ControlBackend() = default;

    virtual StatusSnapshot status() = 0;
    // The configuration in effect: its source file and the TOML `--check-config` prints.
    struct ConfigText {
        std::string source;
        std::string toml;
    };
    virtual ConfigText effective_config() = 0;
    // The configuration the last rollback turned away; nullopt when none was.
    virtual std::optional<ConfigText> rejected_config() = 0;
    // The metrics in the Prometheus text format, as [metrics] listen serves them.
    virtual std::string metrics_text() = 0;
    // Incident reports, newest first: id, kind ("hang" | "death"), reason.
    struct IncidentEntry {
        std::string id, kind, reason;
    };
    virtual std::vector<IncidentEntry> incidents() = 0;
    // One report's text, or why not (no such id: the message says so).
    virtual std::optional<std::string> incident(const std::string& id, std::string& why_not) = 0;
    // stopped | failed -> start; anything else -> failed_precondition.
    virtual void start(Reply reply) = 0;
    // What a Stop asks for: `timeout` overrides stop_timeout for this stop; the child then
    // stays stopped (held) for `hold_for` (nullopt: until start), with `reason`.
    struct StopArgs {
        std::optional<Duration> timeout;
        std::optional<Duration> hold_for;
        std::string reason;
    };
    // Replies once the child is stopped.
    virtual void stop(StopArgs args, Reply reply) = 0;
    // Stops (if running) then starts; replies once the new child is spawned.
    virtual void restart(Reply reply) = 0;
    virtual CommandOutcome signal(int sig) = 0;
    virtual CommandOutcome set_oom_score(OomScore score) = 0;
    virtual void reload(std::function<void(ReloadOutcome)> reply) = 0;
    // Replies at once; vigild then drains the control server and exits.
    virtual void shutdown(bool leave_child_running, Reply reply) = 0;

    // Events from now on, until unsubscribe.
    virtual Subscription subscribe_events(std::function<void(const Event&)> cb) = 0;
    // The latest events, oldest first (a bounded number).
    virtual std::vector<Event> recent_events() = 0;
    virtual void unsubscribe_events(Subscription s) = 0;

    // The captured lines kept now (oldest first), and new ones as they come.
    virtual std::vector<LogLine> log_lines() = 0;
    virtual Subscription subscribe_logs(std::function<void(const LogLine&)> cb) = 0;
    virtual void unsubscribe_logs(Subscription s) = 0;
};

} // namespace vigil
