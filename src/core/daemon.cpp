#include "vigil/daemon.hpp"

#include "vigil/control_module.hpp"
#include "vigil/control_socket.hpp"
#include "vigil/log.hpp"
#include "vigil/process.hpp"

#include <fmt/format.h>

#include <csignal>
#include <sys/stat.h>
#include <unistd.h>

namespace vigil {
namespace {

// How long vigild waits for a lock whose recorded holder is dead (see run()).
constexpr Duration kDeadHolderLockWait = std::chrono::seconds(5);
constexpr useconds_t kLockRetryMicros = 2000;
// Events kept for `vigilctl events` to replay to a new watcher.
constexpr std::size_t kRecentEvents = 100;

// sd_notify's STATUS= text, the same after a state change and after a reload.
std::string status_line(ChildState state, pid_t pid, unsigned restarts) {
    return pid ? fmt::format("child {}, pid {}, {} restarts", to_string(state), pid, restarts)
               : fmt::format("child {}, {} restarts", to_string(state), restarts);
}

} // namespace

Daemon::Daemon(Config config, ConfigLoader loader)
    : config_(config), loader_(std::move(loader)), signals_(io_), watchdog_timer_(io_),
      reaper_(io_), supervisor_(io_, reaper_, std::move(config)) {}

Daemon::~Daemon() {
    drop_control_socket();
}

void Daemon::drop_control_socket() {
    if (!control_socket_)
        return;
    remove_control_socket(config_.daemon.control_socket, control_socket_->dev,
                          control_socket_->ino);
    control_socket_.reset();
}

int Daemon::run() {
    // The control server is a module loaded after the spawn (control_module.hpp); one that
    // is missing or untrusted is found out before anything starts.
    auto module = ControlModule::find();
    if (!module) {
        log::error("{}", module.error().message());
        return kExitSoftware;
    }
    control_module_.emplace(std::move(*module));

    const auto& state_dir = config_.daemon.state_dir;
    if (auto st = ensure_dir(state_dir, 0700); !st) {
        log::error("failed to create state dir: {} (run as root or pass --state-dir)",
                   st.error().message());
        return kExitCantCreate;
    }
    // Trust: vigild believes only what it could have written itself (DESIGN).
    if (auto st = check_private_dir(state_dir); !st) {
        log::error("refusing the state dir: {}", st.error().message());
        return kExitCantCreate;
    }
    if (struct stat st; ::stat(state_dir.c_str(), &st) == 0 && (st.st_mode & 044) != 0)
        log::warn("state dir {} has mode {:04o}: others can read the child's records (chmod "
                  "0700 {})",
                  state_dir, st.st_mode & 07777, state_dir);
    auto lock = lock_.acquire(state_dir);
    // A vigild SIGKILLed while spawning leaves its lock held for a moment by the child it
    // was starting (the child shares the lock fd until its exec closes it). The lock file
    // names the dead vigild: wait for the lock a little instead of exiting 75.
    const auto wait_start = Clock::now();
    bool waited = false;
    while (lock.outcome == StateDirLock::Outcome::held_by_other && lock.holder != 0 &&
           !process_running(lock.holder) && Clock::now() < wait_start + kDeadHolderLockWait) {
        if (!waited)
            log::info("the state-dir lock names pid {}, which is gone; waiting up to {} for it "
                      "(a child it was starting holds it until its exec)",
                      lock.holder, format_duration(kDeadHolderLockWait));
        waited = true;
        ::usleep(kLockRetryMicros);
        lock = lock_.acquire(state_dir);
    }
    if (waited && lock.outcome == StateDirLock::Outcome::acquired)
        log::info("state-dir lock acquired after {}ms",
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - wait_start)
                      .count());
    switch (lock.outcome) {
    case StateDirLock::Outcome::acquired:
        break;
    case StateDirLock::Outcome::held_by_other:
        log::error("{}", lock.message);
        return kExitTempFail;
    case StateDirLock::Outcome::failed:
        log::error("{}", lock.message);
        return kExitCantCreate;
    }
    if (auto st = ensure_dir(config_.daemon.root_dir, 0700); !st) {
        log::error("failed to create root dir: {} (run as root or pass --root-dir)",
                   st.error().message());
        return kExitCantCreate;
    }
    // A write to a closed pipe or socket must be an error code, not vigild's death.
    std::signal(SIGPIPE, SIG_IGN);

    // Metrics over HTTP, when asked for: a port in use is as fatal as a control socket
    // that cannot be created.
    if (auto st = metrics_listener_.listen(config_.metrics.listen, metrics_); !st) {
        log::error("{}", st.error().message());
        return kExitCantCreate;
    }
    if (!config_.metrics.listen.empty())
        log::info("metrics at http://{}/metrics", config_.metrics.listen);

    // The socket is created while the lock is held, so a stale socket can only be a dead
    // vigild's and is safe to remove. Only the cheap part that can fail for the operator to
    // fix (bind, mode, group, listen) comes before the spawn: a bad socket exits 73 having
    // started nothing.
    const ControlServerOptions control_opts{
        config_.daemon.control_socket, config_.daemon.control_socket_mode,
        config_.daemon.control_socket_group, config_.daemon.allowed_uids};
    auto socket = listen_control_socket(control_opts);
    if (!socket) {
        log::error("failed to serve the control socket: {}", socket.error().message());
        return kExitCantCreate;
    }
    control_socket_.emplace(std::move(*socket));

    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    signals_.add(SIGUSR2);
    start_signal_wait();

    supervisor_.set_fatal_handler([this](int code, const std::string& reason) {
        log::error("the child never came up: {}; vigild exits {}", reason, code);
        exit_code_ = code;
        // From the loop: the first start may call this before the control server serves.
        asio::post(io_, [this] { begin_shutdown(false); });
    });
    supervisor_.set_state_observer([this](const StateChange& c) { on_state_change(c); });
    supervisor_.set_event_sink([this](Event e) { publish(std::move(e)); });
    supervisor_.set_probe_observer(
        [this](const HealthOutcome& o, Duration took) { metrics_.observe_health(o, took); });
    log::info("vigild {} (pid {}) supervising {} in {}", VIGIL_VERSION, ::getpid(),
              config_.child.binary, state_dir);
    // The child first (after the lock and adoption, which start_initial does before any
    // spawn): it needs nothing of what follows. gRPC's threads, the control server and the
    // watchdog come up while the child starts.
    supervisor_.start_initial();
    start_control(control_opts);
    start_watchdog();
    io_.run();
    return exit_code_;
}

void Daemon::start_control(const ControlServerOptions& opts) {
    auto made = control_module_->create(io_, *this, opts);
    control_module_.reset();
    if (!made) {
        log::error("{}", made.error().message());
        drop_control_socket();
        exit_code_ = kExitSoftware;
        begin_shutdown(false); // stops the child just started
        return;
    }
    control_ = std::move(*made);
    ListeningSocket socket = std::move(*control_socket_);
    control_socket_.reset();
    if (auto st = control_->serve(std::move(socket)); !st) {
        log::error("failed to serve the control socket: {}", st.error().message());
        control_.reset();
        exit_code_ = kExitCantCreate;
        begin_shutdown(false); // stops the child just started
    }
}

void Daemon::start_signal_wait() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec || finished_)
            return;
        on_signal(sig);
        if (!finished_)
            start_signal_wait();
    });
}

void Daemon::on_signal(int sig) {
    switch (sig) {
    case SIGTERM:
    case SIGINT:
        log::info("{} received: stopping the child, then exiting",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT");
        begin_shutdown(false);
        return;
    case SIGUSR2:
        log::info("SIGUSR2 received: exiting and leaving the child running");
        begin_shutdown(true);
        return;
    case SIGHUP:
        if (shutting_down_) {
            log::info("SIGHUP received while shutting down: ignored");
            return;
        }
        log::info("SIGHUP received: reloading {}", config_.source);
        (void)do_reload();
        return;
    default:
        return;
    }
}

ReloadOutcome Daemon::do_reload() {
    notifier_.reloading();
    std::string dir_change;
    auto loaded = loader_(DirsInUse{config_.daemon.state_dir, config_.daemon.root_dir}, dir_change);
    ReloadOutcome out;
    if (auto* err = std::get_if<ConfigError>(&loaded)) {
        log::error("reload failed, keeping the running configuration: {}", err->message);
        out.outcome = CommandOutcome::invalid("reload failed, the running configuration is "
                                              "kept: " +
                                              err->message);
    } else {
        auto& next = std::get<Config>(loaded);
        log::set_level(next.daemon.log_level);
        out.child_restarted = supervisor_.reload(next);
        config_ = supervisor_.config();
        if (auto st = metrics_listener_.listen(config_.metrics.listen, metrics_); !st)
            log::warn("reload: {}; metrics stay at {}", st.error().message(),
                      metrics_listener_.address().empty() ? "(nowhere)"
                                                          : metrics_listener_.address());
        std::string msg = out.child_restarted ? "configuration reloaded; the child restarts"
                                              : "configuration reloaded";
        if (!dir_change.empty()) {
            log::warn("reload: the configuration asks for {}: that change needs a vigild "
                      "restart; ${{state_dir}} and ${{root_dir}} stay the dirs in use",
                      dir_change);
            msg += "; not applied: " + dir_change + " (needs a vigild restart)";
        }
        out.outcome = CommandOutcome::success(msg);
    }
    // READY=1 ends the reload for systemd, whatever its outcome; before the child was first
    // healthy vigild is not ready yet, so only the STATUS is refreshed.
    const std::string status =
        status_line(supervisor_.state(), supervisor_.child_pid(), supervisor_.restart_count());
    if (ready_sent_)
        notifier_.ready(status);
    else
        notifier_.status(status);
    return out;
}

void Daemon::on_state_change(const StateChange& c) {
    std::string status = status_line(c.to, c.pid, c.restart_count);
    if (supervisor_.held() && c.to == ChildState::stopped)
        status += ", held stopped by the operator (vigilctl start)";
    // Held stopped at start, vigild is as ready as it will be.
    if ((c.to == ChildState::running || (c.to == ChildState::stopped && supervisor_.held())) &&
        !ready_sent_) {
        ready_sent_ = true;
        notifier_.ready(status);
    } else {
        notifier_.status(status);
    }
}

void Daemon::publish(Event e) {
    if (e.kind == Event::Kind::exit && e.exit)
        metrics_.on_exit(*e.exit);
    metrics_.update(supervisor_.brief_status());
    e.seq = next_event_seq_++;
    e.time = std::chrono::system_clock::now();
    recent_events_.push_back(e);
    while (recent_events_.size() > kRecentEvents)
        recent_events_.pop_front();
    // A copy: a subscriber may unsubscribe itself from its callback.
    auto subs = event_subscribers_;
    for (auto& [id, cb] : subs)
        cb(e);
}

void Daemon::start_watchdog() {
    auto interval = notifier_.watchdog_interval();
    if (!interval)
        return;
    notifier_.watchdog();
    watchdog_timer_.expires_after(*interval);
    watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || finished_)
            return;
        supervisor_.loop_lag().record(watchdog_timer_.expiry());
        start_watchdog();
    });
}

void Daemon::begin_shutdown(bool leave_child) {
    if (shutting_down_)
        return;
    shutting_down_ = true;
    notifier_.stopping();
    // The control server drains first (every open call finished) while the loop keeps
    // turning; then the child is stopped or left.
    auto then = [this, leave_child] {
        if (leave_child) {
            supervisor_.detach();
            finish();
            return;
        }
        // A clean stop of vigild ends the operator's hold too (DESIGN): the next vigild
        // starts the child.
        supervisor_.clear_hold();
        supervisor_.stop([this] { finish(); });
    };
    if (control_)
        control_->shutdown(std::move(then));
    else
        then();
}

void Daemon::finish() {
    if (finished_)
        return;
    finished_ = true;
    // Every pending operation is cancelled; io_.run() returns once their handlers ran.
    signals_.cancel();
    watchdog_timer_.cancel();
    reaper_.close();
    supervisor_.detach();
    log::info("vigild exits {}", exit_code_);
}

// ---- ControlBackend ------------------------------------------------------------------

StatusSnapshot Daemon::status() {
    return supervisor_.status();
}

void Daemon::start(Reply reply) {
    if (shutting_down_)
        return reply(CommandOutcome::precondition("vigild is shutting down"));
    supervisor_.start_command(std::move(reply));
}

void Daemon::stop(StopArgs args, Reply reply) {
    if (shutting_down_)
        return reply(CommandOutcome::precondition("vigild is shutting down"));
    supervisor_.stop_command(args.timeout, std::move(reply), args.hold_for, std::move(args.reason));
}

void Daemon::restart(Reply reply) {
    if (shutting_down_)
        return reply(CommandOutcome::precondition("vigild is shutting down"));
    supervisor_.restart_command(std::move(reply));
}

CommandOutcome Daemon::signal(int sig) {
    return supervisor_.signal_command(sig);
}

CommandOutcome Daemon::set_oom_score(OomScore score) {
    return supervisor_.set_oom_score_command(score);
}

void Daemon::reload(std::function<void(ReloadOutcome)> reply) {
    if (shutting_down_)
        return reply({CommandOutcome::precondition("vigild is shutting down"), false});
    log::info("reload requested over the control socket: reloading {}", config_.source);
    reply(do_reload());
}

void Daemon::shutdown(bool leave_child_running, Reply reply) {
    reply(CommandOutcome::success(leave_child_running ? "vigild exits, leaving the child running"
                                                      : "vigild stops the child and exits"));
    // After the reply is on its way: the server drains before the loop ends.
    asio::post(io_, [this, leave_child_running] { begin_shutdown(leave_child_running); });
}

ControlBackend::Subscription Daemon::subscribe_events(std::function<void(const Event&)> cb) {
    const auto id = next_subscription_++;
    event_subscribers_.emplace(id, std::move(cb));
    return id;
}

std::optional<ControlBackend::ConfigText> Daemon::rejected_config() {
    const auto& r = supervisor_.rejected_config();
    if (!r)
        return std::nullopt;
    return ConfigText{r->source, to_toml(*r)};
}

std::vector<ControlBackend::IncidentEntry> Daemon::incidents() {
    std::vector<IncidentEntry> out;
    for (const auto& s : supervisor_.incidents().list())
        out.push_back(IncidentEntry{s.id, s.kind, s.reason});
    return out;
}

std::optional<std::string> Daemon::incident(const std::string& id, std::string& why_not) {
    auto text = supervisor_.incidents().read(id);
    if (!text) {
        why_not = text.error().code == std::errc::no_such_file_or_directory
                      ? "no incident '" + id.substr(0, 64) + "' (vigilctl incidents lists them)"
                      : text.error().message();
        return std::nullopt;
    }
    return std::move(*text);
}

std::string Daemon::metrics_text() {
    metrics_.update(supervisor_.brief_status());
    return metrics_.text();
}

ControlBackend::ConfigText Daemon::effective_config() {
    const Config& c = supervisor_.config();
    return {c.source, to_toml(c)};
}

std::vector<Event> Daemon::recent_events() {
    return {recent_events_.begin(), recent_events_.end()};
}

void Daemon::unsubscribe_events(Subscription s) {
    event_subscribers_.erase(s);
}

std::vector<LogLine> Daemon::log_lines() {
    return supervisor_.output().lines();
}

ControlBackend::Subscription Daemon::subscribe_logs(std::function<void(const LogLine&)> cb) {
    return supervisor_.output().subscribe(std::move(cb));
}

void Daemon::unsubscribe_logs(Subscription s) {
    supervisor_.output().unsubscribe(s);
}

} // namespace vigil
