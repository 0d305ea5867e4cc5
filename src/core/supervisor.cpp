#include "vigil/supervisor.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"
#include "vigil/oom.hpp"
#include "vigil/spawn.hpp"
#include "vigil/state_record.hpp"

#include <fmt/format.h>

#include <csignal>

namespace vigil {
namespace {

// How often vigild re-reads its own oom_score_adj when the child follows it ("inherit").
// /proc offers no change notification; one small read a second is the cost.
constexpr auto kOomFollowInterval = std::chrono::seconds(1);

std::string ms(Clock::duration d) {
    return fmt::format("{}ms", std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

} // namespace

std::string_view to_string(ChildState s) {
    switch (s) {
    case ChildState::stopped:
        return "stopped";
    case ChildState::starting:
        return "starting";
    case ChildState::running:
        return "running";
    case ChildState::unhealthy:
        return "unhealthy";
    case ChildState::backoff:
        return "backoff";
    case ChildState::stopping:
        return "stopping";
    case ChildState::failed:
        return "failed";
    }
    return "?";
}

struct Supervisor::Child {
    pid_t pid = 0;
    UniqueFd pidfd;
    bool adopted = false;
    ProcessIdentity identity;
    Clock::time_point started{};
    bool healthy = false;
    Clock::time_point healthy_since{};
    // Adopted children only: readable when the process exits.
    std::optional<asio::posix::stream_descriptor> exit_watch;
};

Supervisor::Supervisor(asio::io_context& io, Reaper& reaper, Config config)
    : io_(io), reaper_(reaper), config_(std::move(config)), backoff_timer_(io), stop_timer_(io),
      oom_timer_(io) {}

Supervisor::~Supervisor() {
    if (child_)
        reaper_.forget(child_->pid);
}

pid_t Supervisor::child_pid() const {
    return child_ ? child_->pid : 0;
}
bool Supervisor::child_adopted() const {
    return child_ && child_->adopted;
}

void Supervisor::set_state(ChildState next, std::string reason) {
    const ChildState prev = state_;
    state_ = next;
    ++generation_;
    // Timers belong to states; a state that does not use a timer must not see it fire.
    if (next != ChildState::backoff)
        backoff_timer_.cancel();
    if (next != ChildState::stopping)
        stop_timer_.cancel();
    log::info("state {} -> {} ({})", to_string(prev), to_string(next), reason);
    if (observer_)
        observer_(StateChange{prev, next, std::move(reason), child_pid(), restart_count_});
}

void Supervisor::start_initial() {
    std::string why_not;
    if (adopt(why_not))
        return;
    log::info("not adopting a child: {}", why_not);
    remove_child_records(config_.daemon.state_dir);
    start_counted("vigild started");
}

void Supervisor::start_counted(std::string reason) {
    if (!limiter_.try_start(Clock::now(), config_.restart.start_limit_burst,
                            config_.restart.start_limit_interval)) {
        enter_failed(fmt::format("{}; start limit hit: more than {} starts within {}", reason,
                                 config_.restart.start_limit_burst,
                                 format_duration(config_.restart.start_limit_interval)));
        return;
    }
    enter_starting_fresh(std::move(reason));
}

namespace {

// What the child is: a change to any of these needs a new child.
bool child_definition_changed(const Config& a, const Config& b) {
    const auto &x = a.child, &y = b.child;
    const bool level_passed = !x.log_level_flag.empty() || !y.log_level_flag.empty();
    return x.binary != y.binary || x.args != y.args || x.config_file != y.config_file ||
           x.config_flag != y.config_flag || x.log_level_flag != y.log_level_flag ||
           x.new_session != y.new_session || x.env != y.env || x.output != y.output ||
           x.config != y.config || (level_passed && a.daemon.log_level != b.daemon.log_level);
}

} // namespace

bool Supervisor::reload(const Config& next_in) {
    Config next = next_in;
    if (next.daemon.state_dir != config_.daemon.state_dir ||
        next.daemon.root_dir != config_.daemon.root_dir)
        log::warn("reload: state_dir and root_dir changes take effect when vigild restarts; "
                  "keeping {} and {}",
                  config_.daemon.state_dir, config_.daemon.root_dir);
    next.daemon.state_dir = config_.daemon.state_dir;
    next.daemon.root_dir = config_.daemon.root_dir;
    const bool child_changed = child_definition_changed(config_, next);
    const bool oom_changed = config_.child.oom_score_adj != next.child.oom_score_adj;
    config_ = std::move(next);
    log::info("configuration reloaded{}", child_changed ? "; the child's definition changed" : "");

    switch (state_) {
    case ChildState::failed:
        limiter_.reset();
        backoff_attempt_ = 0;
        start_counted("reload after failure");
        return true;
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
        if (child_changed) {
            restart_after_stop_ = true;
            enter_stopping();
            return true;
        }
        if (oom_changed) {
            apply_oom_score(true);
            start_oom_follow();
        }
        return false;
    case ChildState::stopped:
    case ChildState::backoff:
    case ChildState::stopping:
        return false;
    }
    return false;
}

bool Supervisor::adopt(std::string& why_not) {
    auto found = find_adoptable_child(config_.daemon.state_dir, why_not);
    if (!found)
        return false;
    child_ = std::make_unique<Child>();
    child_->pid = found->identity.pid;
    child_->pidfd = std::move(found->pidfd);
    child_->adopted = true;
    child_->identity = found->identity;
    child_->started = Clock::now();
    watch_adopted_exit();
    set_state(ChildState::starting,
              fmt::format("adopted pid {} ({}), proven by start time {} and boot id", child_->pid,
                          child_->identity.exe, child_->identity.start_time));
    apply_oom_score(true);
    start_oom_follow();
    enter_running("adopted child is alive (health checks off)");
    return true;
}

void Supervisor::watch_adopted_exit() {
    // The stream_descriptor owns a duplicate, so child_->pidfd stays usable for signals.
    int fd = ::dup(child_->pidfd.get());
    if (fd < 0) {
        log::error("failed to watch adopted pid {}: dup: {}", child_->pid, strerror(errno));
        return;
    }
    child_->exit_watch.emplace(io_, fd);
    const pid_t pid = child_->pid;
    child_->exit_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                                   [this, pid](const boost::system::error_code& ec) {
                                       if (ec)
                                           return;
                                       if (!child_ || child_->pid != pid)
                                           return;
                                       on_child_exit(ExitStatus{});
                                   });
}

Status Supervisor::write_child_config() {
    const auto& file = config_.child.config_file;
    if (file.empty())
        return ok_status();
    // config_file is a plain name (the loader checks it): it lives in state_dir.
    return atomic_write_file(config_.daemon.state_dir, file, format_toml(config_.child.config),
                             0600);
}

std::vector<std::string> Supervisor::child_argv() const {
    const auto& c = config_.child;
    std::vector<std::string> argv{c.binary};
    if (!c.config_file.empty() && !c.config_flag.empty()) {
        argv.push_back(c.config_flag);
        argv.push_back(config_.daemon.state_dir + "/" + c.config_file);
    }
    if (!c.log_level_flag.empty()) {
        argv.push_back(c.log_level_flag);
        argv.emplace_back(to_string(config_.daemon.log_level));
    }
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    return argv;
}

void Supervisor::enter_starting_fresh(std::string reason) {
    if (auto st = write_child_config(); !st) {
        const std::string msg = "failed to write the child's config file: " + st.error().message();
        log::error("{}", msg);
        if (!ever_healthy_ && fatal_) {
            fatal_(69, msg);
            return;
        }
        schedule_restart(ExitStatus{}, msg);
        return;
    }
    SpawnSpec spec;
    spec.binary = config_.child.binary;
    spec.argv = child_argv();
    spec.env = child_environment(config_.child.env);
    spec.new_session = config_.child.new_session;
    if (!config_.child.oom_score_adj.inherit)
        spec.oom_score = config_.child.oom_score_adj.value;

    auto spawned = spawn_child(spec);
    if (!spawned) {
        const std::string msg = spawned.error().message();
        log::error("{}", msg);
        if (!ever_healthy_ && fatal_) {
            fatal_(69, msg);
            return;
        }
        schedule_restart(ExitStatus{}, msg);
        return;
    }
    child_ = std::make_unique<Child>();
    child_->pid = spawned->pid;
    child_->pidfd = std::move(spawned->pidfd);
    child_->started = Clock::now();
    const pid_t pid = child_->pid;
    reaper_.watch(pid, [this, pid](int status) {
        if (child_ && child_->pid == pid)
            on_child_exit(ExitStatus::from_wait_status(status));
    });

    if (auto id = read_identity(pid)) {
        child_->identity = *id;
        if (auto st = write_child_records(config_.daemon.state_dir, *id); !st)
            log::error("failed to record child pid {} (it cannot be adopted after a vigild "
                       "restart): {}",
                       pid, st.error().message());
    } else {
        log::warn("child pid {} vanished right after exec: {}", pid, id.error().message());
    }
    set_state(ChildState::starting,
              fmt::format("{}: spawned pid {} ({})", reason, pid, spawned->exe));
    if (spawned->oom_errno != 0)
        log::warn("failed to set oom_score_adj {} for child pid {}: {}; {}",
                  config_.child.oom_score_adj.value, pid, strerror(spawned->oom_errno),
                  oom_failure_hint(spawned->oom_errno));
    apply_oom_score(false);
    start_oom_follow();
    enter_running("exec succeeded (health checks off)");
}

void Supervisor::enter_running(std::string reason) {
    if (!child_)
        return;
    child_->healthy = true;
    child_->healthy_since = Clock::now();
    ever_healthy_ = true;
    set_state(ChildState::running,
              fmt::format("{}, {} after start", reason, ms(Clock::now() - child_->started)));
}

void Supervisor::enter_backoff(Duration delay, std::string reason) {
    set_state(ChildState::backoff, fmt::format("{}; restarting in {}", reason, ms(delay)));
    const unsigned gen = generation_;
    backoff_timer_.expires_after(delay);
    backoff_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != generation_)
            return; // a queued handler of an earlier state
        on_backoff_expired();
    });
}

void Supervisor::on_backoff_expired() {
    switch (state_) {
    case ChildState::backoff:
        ++restart_count_;
        enter_starting_fresh(fmt::format("restart #{}", restart_count_));
        return;
    case ChildState::stopped:
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
    case ChildState::stopping:
    case ChildState::failed:
        return;
    }
}

void Supervisor::schedule_restart(const ExitStatus& status, std::string reason) {
    if (!should_restart(config_.restart.policy, status)) {
        enter_stopped(fmt::format("{}; restart policy {} does not restart it", reason,
                                  to_string(config_.restart.policy)));
        return;
    }
    const auto now = Clock::now();
    const bool was_healthy = child_ && child_->healthy;
    if (was_healthy && now - child_->healthy_since >= config_.restart.reset_after)
        backoff_attempt_ = 0;
    // Only a child that ran healthy is restarted at once; a failed start always waits.
    if (!was_healthy && backoff_attempt_ == 0)
        backoff_attempt_ = 1;
    const Duration delay = backoff_delay(backoff_attempt_, config_.restart.backoff_initial,
                                         config_.restart.backoff_max);
    ++backoff_attempt_;
    child_.reset();
    // A restart counts against the start limit when it is decided, so a crash loop ends in
    // `failed` without first sitting out the back-off.
    if (!limiter_.try_start(now, config_.restart.start_limit_burst,
                            config_.restart.start_limit_interval)) {
        enter_failed(fmt::format("{}; start limit hit: more than {} starts within {}", reason,
                                 config_.restart.start_limit_burst,
                                 format_duration(config_.restart.start_limit_interval)));
        return;
    }
    enter_backoff(delay, std::move(reason));
}

void Supervisor::on_child_exit(const ExitStatus& status) {
    const pid_t pid = child_->pid;
    const auto ran = Clock::now() - child_->started;
    last_exit_ = status;
    oom_timer_.cancel();
    remove_child_records(config_.daemon.state_dir);
    const std::string reason =
        fmt::format("child pid {} exited: {}, after {}", pid, describe(status), ms(ran));
    switch (state_) {
    case ChildState::stopping:
        child_.reset();
        enter_stopped(reason);
        return;
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
        schedule_restart(status, reason);
        return;
    case ChildState::stopped:
    case ChildState::backoff:
    case ChildState::failed:
        // No child belongs to these states; log and drop it.
        log::warn("unexpected exit in state {}: {}", to_string(state_), reason);
        child_.reset();
        return;
    }
}

void Supervisor::stop(std::function<void()> done) {
    restart_after_stop_ = false; // an explicit stop wins over a pending reload restart
    switch (state_) {
    case ChildState::stopped:
    case ChildState::failed:
        done();
        return;
    case ChildState::backoff:
        enter_stopped("stop requested during back-off");
        done();
        return;
    case ChildState::stopping: {
        auto prev = std::move(stop_done_);
        stop_done_ = [prev = std::move(prev), done = std::move(done)] {
            if (prev)
                prev();
            done();
        };
        return;
    }
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
        stop_done_ = std::move(done);
        enter_stopping();
        return;
    }
}

void Supervisor::enter_stopping() {
    set_state(ChildState::stopping,
              fmt::format("stop requested: sending {} to pid {}, SIGKILL after {}",
                          signal_name(config_.child.stop_signal), child_pid(),
                          format_duration(config_.child.stop_timeout)));
    signal_child(config_.child.stop_signal, "stop");
    const unsigned gen = generation_;
    stop_timer_.expires_after(config_.child.stop_timeout);
    stop_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != generation_)
            return;
        on_stop_timeout();
    });
}

void Supervisor::on_stop_timeout() {
    switch (state_) {
    case ChildState::stopping:
        log::warn("child pid {} did not exit within {} of {}; sending SIGKILL", child_pid(),
                  format_duration(config_.child.stop_timeout),
                  signal_name(config_.child.stop_signal));
        signal_child(SIGKILL, "stop timeout");
        return;
    case ChildState::stopped:
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
    case ChildState::backoff:
    case ChildState::failed:
        return;
    }
}

void Supervisor::enter_stopped(std::string reason) {
    remove_child_records(config_.daemon.state_dir);
    set_state(ChildState::stopped, std::move(reason));
    if (auto done = std::move(stop_done_)) {
        stop_done_ = nullptr;
        done();
    } else if (restart_after_stop_) {
        restart_after_stop_ = false;
        start_counted("restart for the reloaded configuration");
    }
}

void Supervisor::enter_failed(std::string reason) {
    remove_child_records(config_.daemon.state_dir);
    set_state(ChildState::failed, std::move(reason));
    log::error("child failed: {}. vigild stays up; `vigilctl start` or a reload tries again",
               config_.child.binary);
}

void Supervisor::detach() {
    backoff_timer_.cancel();
    stop_timer_.cancel();
    oom_timer_.cancel();
    ++generation_;
    if (child_) {
        log::info("leaving child pid {} running; its records stay in {} for the next vigild",
                  child_->pid, config_.daemon.state_dir);
        reaper_.forget(child_->pid);
        child_.reset();
    }
}

void Supervisor::signal_child(int sig, std::string_view why) {
    if (!child_)
        return;
    if (auto st = pidfd_send_signal(child_->pidfd.get(), sig); !st) {
        if (st.error().code == std::errc::no_such_process)
            log::debug("{} to pid {}: already exited", signal_name(sig), child_->pid);
        else
            log::error("failed to send {} to child pid {} ({}): {}", signal_name(sig), child_->pid,
                       why, st.error().message());
        return;
    }
    log::debug("sent {} to child pid {} ({})", signal_name(sig), child_->pid, why);
}

void Supervisor::apply_oom_score(bool write) {
    if (!child_)
        return;
    const auto& conf = config_.child.oom_score_adj;
    int target = conf.value;
    if (conf.inherit) {
        auto own = read_oom_score(0);
        if (!own) {
            log::warn("failed to read vigild's own oom_score_adj: {}", own.error().message());
            return;
        }
        target = *own;
    }
    last_applied_oom_ = target;
    if (write) {
        if (auto st = write_oom_score(child_->pid, target); !st) {
            log::warn("failed to set oom_score_adj {} for child pid {}: {}{}{}", target,
                      child_->pid, st.error().code.message(),
                      oom_failure_hint(st.error().code.value()).empty() ? "" : "; ",
                      oom_failure_hint(st.error().code.value()));
        }
    }
    auto actual = read_oom_score(child_->pid);
    if (actual)
        log::info("oom_score_adj of child pid {}: configured {}, actual {}", child_->pid,
                  conf.inherit ? fmt::format("inherit ({})", target) : std::to_string(target),
                  *actual);
}

void Supervisor::start_oom_follow() {
    if (!config_.child.oom_score_adj.inherit)
        return;
    const unsigned gen = ++oom_generation_;
    oom_timer_.expires_after(kOomFollowInterval);
    oom_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != oom_generation_)
            return;
        on_oom_follow_tick();
    });
}

void Supervisor::on_oom_follow_tick() {
    if (!child_ || !config_.child.oom_score_adj.inherit)
        return;
    auto own = read_oom_score(0);
    if (own && *own != last_applied_oom_) {
        log::info("vigild's oom_score_adj changed from {} to {}; applying it to child pid {}",
                  last_applied_oom_, *own, child_->pid);
        apply_oom_score(true);
    }
    start_oom_follow();
}

} // namespace vigil
