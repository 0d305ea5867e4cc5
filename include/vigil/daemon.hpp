// vigild as a whole: the io_context, the signals, the state-dir lock, sd_notify, the
// supervisor and the control server. Daemon is also the ControlBackend the control server
// calls (on the loop thread).
#pragma once

#include "vigil/asio.hpp"
#include "vigil/cli.hpp"
#include "vigil/config.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/control_module.hpp"
#include "vigil/control_socket.hpp"
#include "vigil/fs_util.hpp"
#include "vigil/metrics.hpp"
#include "vigil/notify.hpp"
#include "vigil/reaper.hpp"
#include "vigil/supervisor.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <variant>

namespace vigil {

// Exit statuses of DESIGN.md (sysexits.h values).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitUnavailable = 69;
// EX_SOFTWARE: vigild's own installation is broken (the control module missing, untrusted or
// from another build).
inline constexpr int kExitSoftware = 70;
inline constexpr int kExitCantCreate = 73;
inline constexpr int kExitTempFail = 75;
inline constexpr int kExitConfig = 78;

class Daemon final : public ControlBackend {
public:
    // Re-reads the configuration the way main() first read it (file + flags + expansion),
    // keeping the dirs in use (see load_effective_config).
    using ConfigLoader = std::function<std::variant<Config, ConfigError>(const DirsInUse& in_use,
                                                                         std::string& dir_change)>;

    Daemon(Config config, ConfigLoader loader);
    ~Daemon() override;

    // Runs until vigild is told to exit; returns the exit status.
    int run();

    // ControlBackend (loop thread).
    StatusSnapshot status() override;
    void start(Reply reply) override;
    void stop(StopArgs args, Reply reply) override;
    void restart(Reply reply) override;
    CommandOutcome signal(int sig) override;
    CommandOutcome set_oom_score(OomScore score) override;
    void reload(std::function<void(ReloadOutcome)> reply) override;
    void shutdown(bool leave_child_running, Reply reply) override;
    Subscription subscribe_events(std::function<void(const Event&)> cb) override;
    std::vector<Event> recent_events() override;
    ConfigText effective_config() override;
    std::optional<ConfigText> rejected_config() override;
    std::string metrics_text() override;
    std::vector<IncidentEntry> incidents() override;
    std::optional<std::string> incident(const std::string& id, std::string& why_not) override;
    void unsubscribe_events(Subscription s) override;
    std::vector<LogLine> log_lines() override;
    Subscription subscribe_logs(std::function<void(const LogLine&)> cb) override;
    void unsubscribe_logs(Subscription s) override;

private:
    void start_signal_wait();
    void on_signal(int sig);
    ReloadOutcome do_reload();
    void on_state_change(const StateChange& change);
    void publish(Event e);
    void start_watchdog();
    void begin_shutdown(bool leave_child);
    // After the first spawn: loads the control module and serves the socket listened on.
    void start_control(const ControlServerOptions& opts);
    void drop_control_socket(); // listened on, never served: its file is removed
    void finish();

    // Declared first so it is destroyed last, after everything that holds its handlers.
    asio::io_context io_;
    Config config_;
    ConfigLoader loader_;
    Notifier notifier_;
    asio::signal_set signals_;
    asio::steady_timer watchdog_timer_;
    Reaper reaper_;
    Supervisor supervisor_;
    StateDirLock lock_;
    std::map<Subscription, std::function<void(const Event&)>> event_subscribers_;
    std::deque<Event> recent_events_; // the latest events, for a watcher's replay
    Subscription next_subscription_ = 1;
    std::uint64_t next_event_seq_ = 1;
    bool ready_sent_ = false;
    bool shutting_down_ = false;
    bool finished_ = false;
    int exit_code_ = kExitOk;
    // Last, so it is destroyed first: its destructor still calls back into this backend
    // (unsubscribe) when shutdown() never ran.
    std::unique_ptr<ControlService> control_;
    // Between the socket's listen() (before the spawn) and the module's serve() after it.
    std::optional<ControlModule> control_module_;
    std::optional<ListeningSocket> control_socket_;
    Metrics metrics_;                  // lives as long as vigild: counters survive reloads
    MetricsListener metrics_listener_; // [metrics] listen
};

} // namespace vigil
