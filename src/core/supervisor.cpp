#include "vigil/supervisor.hpp"
#include "vigil/probers.hpp"

#include "vigil/exec_env.hpp"
#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"
#include "vigil/oom.hpp"
#include "vigil/operator_hold.hpp"
#include "vigil/spawn.hpp"
#include "vigil/state_record.hpp"
#include "vigil/stop_watch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vigil {
namespace {

// How often vigild re-reads its own oom_score_adj when the child follows it ("inherit").
// /proc offers no change notification; one small read a second is the cost. A health
// probe's result is a wakeup anyway: the check rides on it (at most every
// kOomFollowRideMin) and pushes the timer out, so with probes the timer never fires.
constexpr auto kOomFollowInterval = std::chrono::seconds(1);
constexpr auto kOomFollowRideMin = std::chrono::milliseconds(250);
// Incident reports: the last checks they show, the lines of output at most, and how long
// a report waits after the death for the output still in the pipes.
constexpr std::size_t kIncidentProbes = 10;
constexpr std::size_t kIncidentLines = 2000;
constexpr auto kIncidentOutputGrace = std::chrono::milliseconds(250);
// After a SIGKILL whose OOM record was not in the kernel log yet: when to look again.
constexpr auto kOomKillRecheck = std::chrono::milliseconds(200);

// "root (0)"; the uid alone when it has no name. Looked up once per uid: a name service
// must not be asked on every status call.
std::string describe_uid(uid_t uid) {
    static std::map<uid_t, std::string> cache;
    if (auto it = cache.find(uid); it != cache.end())
        return it->second;
    auto u = lookup_user(std::to_string(uid));
    std::string d =
        u && !u->name.empty() ? fmt::format("{} ({})", u->name, uid) : fmt::format("uid {}", uid);
    cache.emplace(uid, d);
    return d;
}

std::string own_user() {
    return describe_uid(::geteuid());
}

// A span of time as every other duration vigil prints: systemd's way ("13s 782ms").
std::string ms(Clock::duration d) {
    return format_duration(std::chrono::duration_cast<Duration>(d));
}

SystemTime wall_now() {
    return std::chrono::system_clock::now();
}

} // namespace

std::string_view to_string(Event::Kind k) {
    switch (k) {
    case Event::Kind::state:
        return "state";
    case Event::Kind::exit:
        return "exit";
    case Event::Kind::health:
        return "health";
    case Event::Kind::oom:
        return "oom";
    case Event::Kind::reload:
        return "reload";
    case Event::Kind::signal:
        return "signal";
    }
    return "?";
}

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
    Child() {
        static std::uint64_t next_serial = 0;
        serial = ++next_serial;
    }
    std::uint64_t serial; // tells this child from a later one, even with the same pid
    pid_t pid = 0;
    UniqueFd pidfd;
    bool adopted = false;
    ProcessIdentity identity;
    Clock::time_point started{};
    SystemTime started_wall{};
    bool healthy = false; // reached running at least once
    Clock::time_point healthy_since{};
    std::string kill_reason;       // vigild killed it (hung, startup timeout): why
    std::string token;             // the spawn token in its environment ("" if unknown)
    std::string differs;           // adopted: how it differs from the configuration ("" = not)
    std::string user;              // who it runs as, for status: "nobody (65534)"
    std::vector<std::string> argv; // adopted: the argv it really runs with
    // Readable when the process exits: the only exit notice for an adopted child, and a
    // second one beside SIGCHLD for a spawned child.
    std::optional<asio::posix::stream_descriptor> exit_watch;
    // A spawned child stopped by a signal: probed at once. Declared after pidfd, which it
    // borrows, so it goes first.
    std::unique_ptr<ChildStopWatch> stop_watch;
};

Supervisor::Supervisor(asio::io_context& io, Reaper& reaper, Config config,
                       std::unique_ptr<HealthProber> prober)
    : io_(io), reaper_(reaper), config_(std::move(config)), prober_(std::move(prober)), output_(io),
      backoff_timer_(io), stop_timer_(io), oom_timer_(io), startup_timer_(io),
      first_start_timer_(io), dump_timer_(io), hold_timer_(io), oom_kill_timer_(io),
      incident_timer_(io),
      probes_(io, [this](const HealthOutcome& outcome) { on_probe_result(outcome); }) {
    prober_injected_ = prober_ != nullptr; // a test's fake: kept across reloads
    if (!prober_)
        prober_ = new_prober();
    if (auto st = kmsg_.open(); !st)
        log::info("{}: a kill by the kernel's OOM killer will show as a plain SIGKILL (vigild "
                  "needs CAP_SYSLOG, or kernel.dmesg_restrict = 0)",
                  st.error().message());
    probes_.set_loop_lag(&loop_lag_);
    probes_.set_observer([this](const HealthOutcome& outcome, Duration took) {
        recent_probes_.push_back(ProbeRecord{wall_now(), outcome.describe(), took});
        while (recent_probes_.size() > kIncidentProbes)
            recent_probes_.pop_front();
        if (probe_observer_)
            probe_observer_(outcome, took);
    });
    incidents_.configure(config_.incidents.dir, static_cast<unsigned>(config_.incidents.keep));
    resolve_identity();
    (void)own_user(); // looked up now, not on the loop at the first spawn
}

void Supervisor::resolve_identity() {
    auto id = resolve_child_identity(config_.child);
    if (id) {
        identity_ = std::move(*id);
        identity_error_.clear();
        return;
    }
    identity_.reset();
    identity_error_ = id.error().message();
    log::warn("the child's user or group cannot be resolved: {} (every start fails until a "
              "reload resolves it)",
              identity_error_);
}

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
bool Supervisor::health_enabled() const {
    return config_.health.kind != HealthKind::none && prober_ != nullptr;
}

void Supervisor::emit(Event e) {
    if (events_)
        events_(std::move(e));
}

void Supervisor::set_state(ChildState next, std::string reason) {
    const ChildState prev = state_;
    state_ = next;
    state_reason_ = reason;
    state_since_ = wall_now();
    ++generation_;
    // Timers belong to states; a state that does not use a timer must not see it fire.
    if (next != ChildState::backoff)
        backoff_timer_.cancel();
    if (next != ChildState::stopping)
        stop_timer_.cancel();
    if (next != ChildState::starting)
        startup_timer_.cancel();
    if (next != ChildState::starting && next != ChildState::running &&
        next != ChildState::unhealthy)
        probes_.stop(); // a reply still in flight is stale
    if (next == ChildState::failed || next == ChildState::backoff)
        log::warn("state {} -> {} ({})", to_string(prev), to_string(next), reason);
    else
        log::info("state {} -> {} ({})", to_string(prev), to_string(next), reason);
    Event e;
    e.kind = Event::Kind::state;
    e.from_state = std::string(to_string(prev));
    e.to_state = std::string(to_string(next));
    e.pid = child_pid();
    e.message = fmt::format("{} -> {} ({})", e.from_state, e.to_state, reason);
    emit(std::move(e));
    if (observer_)
        observer_(StateChange{prev, next, std::move(reason), child_pid(), restart_count_});
}

// ---- starting ------------------------------------------------------------------------

void Supervisor::start_initial() {
    instance_ = canonical_path(config_.daemon.state_dir);
    hold_ = read_hold(config_.daemon.state_dir);
    if (hold_ && hold_->until && *hold_->until <= wall_now()) {
        log::info("the operator's hold ran out while vigild was down: starting the child");
        clear_hold();
    }
    first_start_pending_ = !hold_;
    if (health_enabled() && !hold_) {
        first_start_timer_.expires_after(config_.health.startup_timeout);
        first_start_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec)
                on_first_start_deadline();
        });
    }
    std::string why_not;
    if (adopt(why_not)) {
        if (hold_) {
            // Stopped by the operator, but still alive (vigild died during the stop).
            log::info("the child is {}: stopping the adopted child", hold_->describe());
            stop([] {});
            arm_hold_expiry();
        }
        return;
    }
    log::info("not adopting a child: {}", why_not);
    remove_child_records(config_.daemon.state_dir);
    // No live process carries the recorded next-spawn token (adopt() looked), so it may be
    // used for this spawn; a missing or unusable record gets a new token.
    std::string ignored;
    if (auto next = read_next_spawn(config_.daemon.state_dir, instance_, ignored)) {
        next_ = *next;
    } else {
        auto boot = read_boot_id();
        next_ = NextSpawn{instance_, boot ? *boot : std::string(), new_spawn_token(), ""};
    }
    (void)prepare_next_spawn();
    if (hold_) {
        set_state(ChildState::stopped, "not started: " + hold_->describe());
        arm_hold_expiry();
        return;
    }
    start_counted("vigild started");
}

void Supervisor::set_hold(std::optional<Duration> hold_for, std::string reason) {
    OperatorHold h;
    h.since = wall_now();
    if (hold_for)
        h.until = h.since + *hold_for;
    h.reason = std::move(reason);
    hold_ = h;
    if (auto st = write_hold(config_.daemon.state_dir, h); !st)
        log::error("failed to record the operator's hold (a vigild restart would start the "
                   "child again): {}",
                   st.error().message());
    arm_hold_expiry();
}

void Supervisor::clear_hold() {
    ++hold_generation_;
    hold_timer_.cancel();
    if (!hold_)
        return;
    hold_.reset();
    remove_hold(config_.daemon.state_dir);
}

void Supervisor::arm_hold_expiry() {
    const unsigned gen = ++hold_generation_;
    hold_timer_.cancel();
    if (!hold_ || !hold_->until)
        return;
    // Wall-clock: the hold outlives vigild, and so does its deadline.
    hold_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
        std::max(*hold_->until - wall_now(), SystemTime::duration::zero())));
    hold_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != hold_generation_)
            return;
        on_hold_expired();
    });
}

void Supervisor::on_hold_expired() {
    const std::string what = hold_ ? hold_->describe() : std::string("the hold");
    clear_hold();
    switch (state_) {
    case ChildState::stopped:
        log::info("{} ran out: starting the child", what);
        limiter_.reset();
        backoff_attempt_ = 0;
        start_counted("the operator's hold ran out");
        return;
    case ChildState::stopping: // a stop still in progress: start once it is stopped
        restart_after_stop_ = true;
        return;
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
    case ChildState::backoff:
    case ChildState::failed:
        return;
    }
}

void Supervisor::start_counted(std::string reason) {
    if (!admit_start(Clock::now(), reason))
        return;
    enter_starting_fresh(std::move(reason));
}

bool Supervisor::adopt(std::string& why_not) {
    auto found = find_adoptable_child(config_.daemon.state_dir, instance_, why_not);
    if (!found)
        return false;
    const ProcessIdentity& id = found->record.identity;
    child_ = std::make_unique<Child>();
    child_->pid = id.pid;
    child_->pidfd = std::move(found->pidfd);
    child_->adopted = true;
    child_->identity = id;
    child_->token = found->record.token;
    child_->user = describe_uid(id.uid);
    child_->started = Clock::now();
    child_->started_wall = process_start_wall_time(id.start_time).value_or(wall_now());
    watch_exit();
    // Written again: found by its token, the child has no record yet (vigild was killed
    // between the spawn and the record); found by its record, the pid file may be missing
    // (killed between the two writes).
    if (auto st = write_child_records(config_.daemon.state_dir, found->record); !st)
        log::error("failed to record adopted child pid {}: {}", id.pid, st.error().message());
    // The next spawn must carry a token no live process has.
    next_ = NextSpawn{instance_, id.boot_id, new_spawn_token(), ""};
    (void)prepare_next_spawn();
    // Shown as it really runs, and said when that is not the configuration (DESIGN).
    if (auto argv = read_cmdline(id.pid); argv && !argv->empty())
        child_->argv = std::move(*argv);
    const auto configured_argv = child_argv();
    if (auto configured = resolve_binary(config_.child.binary);
        configured && !same_executable(*configured, id.exe)) {
        child_->differs =
            fmt::format("it runs {}, not the configured {}: restart to apply", id.exe, *configured);
    } else if (!child_->argv.empty() &&
               !std::equal(child_->argv.begin() + 1, child_->argv.end(),
                           configured_argv.begin() + 1, configured_argv.end())) {
        child_->differs = "its arguments are not the configured ones: restart to apply";
    }
    if (!child_->differs.empty())
        log::warn("adopted child pid {} {}", id.pid, child_->differs);
    set_state(ChildState::starting,
              fmt::format("adopted pid {} ({}), proven by {}{}", child_->pid, id.exe,
                          found->by_token ? "the spawn token in its environment"
                                          : fmt::format("start time {} and boot id", id.start_time),
                          child_->differs.empty() ? "" : "; " + child_->differs));
    (void)apply_oom_score(true);
    start_oom_follow();
    if (auto* n = notify_prober())
        n->new_child(true, id.uid); // it told the vigild before this one it was ready
    begin_health_or_run("adopted child is alive");
    return true;
}

void Supervisor::watch_exit() {
    // The stream_descriptor owns a duplicate, so child_->pidfd stays usable for signals.
    int fd = ::fcntl(child_->pidfd.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        log::error("failed to watch child pid {}: dup: {}", child_->pid, strerror(errno));
        return;
    }
    child_->exit_watch.emplace(io_, fd);
    const pid_t pid = child_->pid;
    child_->exit_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                                   [this, pid](const boost::system::error_code& ec) {
                                       if (ec || !child_ || child_->pid != pid)
                                           return;
                                       if (child_->adopted) {
                                           on_child_exit(ExitStatus{});
                                           return;
                                       }
                                       // A spawned child: SIGCHLD and the pidfd race; whichever
                                       // handler runs first reaps it. This path alone still works
                                       // when SIGCHLD never comes.
                                       siginfo_t info{};
                                       if (::waitid(static_cast<idtype_t>(P_PIDFD),
                                                    static_cast<id_t>(child_->pidfd.get()), &info,
                                                    WEXITED | WNOHANG) != 0 ||
                                           info.si_pid != pid) {
                                           return; // reaped elsewhere: the reaper's handler runs
                                       }
                                       reaper_.forget(pid);
                                       log::debug("reaped child pid {} through its pidfd", pid);
                                       on_child_exit(ExitStatus::from_siginfo(info));
                                   });
}

Status Supervisor::prepare_next_spawn() {
    auto binary = resolve_binary(config_.child.binary);
    const std::string resolved = binary ? *binary : config_.child.binary;
    if (next_written_ && next_.binary == resolved)
        return ok_status();
    next_.binary = resolved;
    auto st = write_next_spawn(config_.daemon.state_dir, next_);
    next_written_ = st.ok();
    if (!st)
        log::error("failed to write the next-spawn record (a vigild killed during the next "
                   "restart could start a second child): {}",
                   st.error().message());
    return st;
}

Status Supervisor::write_child_config() {
    const auto& file = config_.child.config_file;
    if (file.empty())
        return ok_status();
    // config_file is a plain name (the loader checks it): it lives in state_dir. A file that
    // already holds exactly this text (mode 0600, not a symlink) is left alone. A rewrite is
    // not fsynced (it would block the loop for milliseconds, up to seconds on a busy disk):
    // the file is derived from vigild's config and checked before every start, so one that a
    // machine crash lost or truncated is rewritten before any child reads it.
    const std::string text = format_toml(config_.child.config);
    const std::string path = config_.daemon.state_dir + "/" + file;
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600 &&
        st.st_uid == ::geteuid()) {
        if (auto current = read_file_nofollow(path); current && *current == text)
            return ok_status();
    }
    return atomic_write_file(config_.daemon.state_dir, file, text, 0600, Durability::process_crash);
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

void Supervisor::fail_start(std::string reason) {
    log::error("{}", reason);
    last_failure_ = reason;
    answer_start_replies(CommandOutcome{CommandOutcome::Code::internal, reason});
    if (roll_back(reason)) {
        start_counted("rolled back to the previous configuration");
        return;
    }
    if (first_start_pending_ && fatal_) {
        // vigild's own first start: a child that cannot even be exec'd (binary missing)
        // will not get better by waiting, so vigild exits 69 at once.
        first_start_pending_ = false;
        first_start_timer_.cancel();
        fatal_(69, reason);
        return;
    }
    schedule_restart(ExitStatus{}, std::move(reason));
}

void Supervisor::enter_starting_fresh(std::string reason) {
    if (auto st = write_child_config(); !st) {
        fail_start("failed to write the child's config file: " + st.error().message());
        return;
    }
    // Normally a no-op: the record naming this spawn's token was written after the last
    // spawn (or at a reload that changed the binary), off the restart's path.
    (void)prepare_next_spawn();
    // Users and groups were resolved when the configuration was loaded (a reload resolves
    // them again); env files are read at each start, so an edit applies at the next one.
    // What fails is a failed start like an exec failure.
    if (!identity_) {
        fail_start(fmt::format("failed to prepare the environment of {}: {} (resolved when the "
                               "configuration was loaded; fix it and reload)",
                               config_.child.binary, identity_error_));
        return;
    }
    auto exec_env = prepare_exec_env(config_.child, *identity_);
    if (!exec_env) {
        fail_start(fmt::format("failed to prepare the environment of {}: {}", config_.child.binary,
                               exec_env.error().message()));
        return;
    }
    SpawnSpec spec;
    spec.binary = config_.child.binary;
    spec.argv = child_argv();
    spec.env = std::move(exec_env->env);
    spec.env.push_back(fmt::format("{}={}", kSpawnTokenEnv, next_.token));
    spec.limits = exec_env->limits;
    spec.groups = exec_env->groups;
    spec.gid = exec_env->gid;
    spec.uid = exec_env->uid;
    if (auto* n = notify_prober()) {
        spec.env.push_back("NOTIFY_SOCKET=" + n->socket_env());
        if (config_.health.watchdog)
            spec.env.push_back(fmt::format(
                "WATCHDOG_USEC={}",
                std::chrono::duration_cast<std::chrono::microseconds>(*config_.health.watchdog)
                    .count()));
    }
    spec.no_new_privileges = exec_env->no_new_privileges;
    spec.working_directory = exec_env->working_directory;
    spec.umask = exec_env->umask;
    spec.new_session = config_.child.new_session;
    if (!config_.child.oom_score_adj.inherit)
        spec.oom_score = config_.child.oom_score_adj.value;
    std::optional<OutputCapture::Pipes> pipes;
    if (config_.child.output == OutputMode::capture) {
        auto p = output_.prepare();
        if (!p) {
            fail_start(p.error().message());
            return;
        }
        pipes = std::move(*p);
        spec.stdout_fd = pipes->stdout_w.get();
        spec.stderr_fd = pipes->stderr_w.get();
    }

    auto spawned = spawn_child(spec);
    pipes.reset(); // the child holds the write ends now; EOF comes when it is gone
    if (!spawned) {
        output_.abandon();
        fail_start(spawned.error().message());
        return;
    }
    child_ = std::make_unique<Child>();
    child_->pid = spawned->pid;
    child_->pidfd = std::move(spawned->pidfd);
    child_->token = next_.token;
    child_->user = exec_env->user_name.empty() ? own_user() : exec_env->user_name;
    child_->started = Clock::now();
    child_->started_wall = wall_now();
    if (auto* n = notify_prober())
        n->new_child(false, spec.uid.value_or(::geteuid()));
    const pid_t pid = child_->pid;
    if (config_.child.output == OutputMode::capture)
        output_.attach(pid);
    reaper_.watch(pid, [this, pid](int status) {
        if (child_ && child_->pid == pid)
            on_child_exit(ExitStatus::from_wait_status(status));
    });
    watch_exit();
    child_->stop_watch = std::make_unique<ChildStopWatch>(io_, child_->pidfd.get(), [this, pid] {
        if (!child_ || child_->pid != pid || !probes_.active())
            return;
        log::info("child pid {} was stopped by a signal: probing it now", pid);
        probes_.probe_now();
    });

    if (auto id = read_identity(pid)) {
        child_->identity = *id;
        if (auto st = write_child_records(config_.daemon.state_dir,
                                          ChildRecord{instance_, *id, child_->token});
            !st)
            log::error("failed to record child pid {} (a new vigild finds it by its spawn "
                       "token instead): {}",
                       pid, st.error().message());
    } else {
        log::warn("child pid {} vanished right after exec: {}", pid, id.error().message());
    }
    // The token the next spawn carries, recorded now, long before that spawn. If it cannot
    // be recorded, the next spawn carries the recorded one (this child's): only one live
    // process at a time carries it with the configured executable.
    const std::string recorded = next_.token;
    next_.token = new_spawn_token();
    next_written_ = false;
    if (!prepare_next_spawn()) {
        next_.token = recorded;
        next_written_ = true;
    }
    set_state(ChildState::starting,
              fmt::format("{}: spawned pid {} ({})", reason, pid, spawned->exe));
    answer_start_replies(CommandOutcome::success(fmt::format("started pid {}", pid)));
    if (spawned->oom_errno != 0) {
        const std::string hint = oom_failure_hint(spawned->oom_errno);
        log::warn("failed to set oom_score_adj {} for child pid {}: {}{}{}",
                  config_.child.oom_score_adj.value, pid, strerror(spawned->oom_errno),
                  hint.empty() ? "" : "; ", hint);
    }
    (void)apply_oom_score(false);
    start_oom_follow();
    begin_health_or_run("exec succeeded");
}

void Supervisor::begin_health_or_run(const std::string& how) {
    if (!health_enabled()) {
        enter_running(how + " (health checks off)");
        return;
    }
    consecutive_failures_ = 0;
    last_health_.reset(); // each child's first answer is an event of its own
    const unsigned gen = generation_;
    startup_timer_.expires_after(config_.health.startup_timeout);
    startup_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (ec || gen != generation_)
            return;
        on_startup_timeout();
    });
    // A new channel for this child; fast probes, and one at once when the socket appears.
    probes_.start(*prober_, probe_schedule_for(config_.health), ProbeScheduler::Phase::starting);
}

void Supervisor::enter_running(std::string reason) {
    if (!child_)
        return;
    child_->healthy = true;
    child_->healthy_since = Clock::now();
    if (rollback_to_) {
        rollback_to_.reset();
        log::info("reload kept: the new child is healthy");
    }
    if (first_start_pending_) {
        first_start_pending_ = false;
        first_start_timer_.cancel();
    }
    set_state(ChildState::running,
              fmt::format("{}, {} after start", reason, ms(Clock::now() - child_->started)));
}

void Supervisor::on_first_start_deadline() {
    if (!first_start_pending_)
        return;
    first_start_pending_ = false;
    const std::string reason = fmt::format(
        "the child was not healthy within startup_timeout {} of vigild's start (last: {})",
        format_duration(config_.health.startup_timeout),
        last_failure_.empty() ? "no answer yet" : last_failure_);
    if (fatal_)
        fatal_(69, reason);
}

void Supervisor::on_startup_timeout() {
    switch (state_) {
    case ChildState::starting:
        kill_for(fmt::format("not healthy within startup_timeout {} (last: {})",
                             format_duration(config_.health.startup_timeout),
                             last_failure_.empty() ? "no answer yet" : last_failure_));
        return;
    case ChildState::stopped:
    case ChildState::running:
    case ChildState::unhealthy:
    case ChildState::backoff:
    case ChildState::stopping:
    case ChildState::failed:
        return;
    }
}

// ---- health --------------------------------------------------------------------------

void Supervisor::on_probe_result(const HealthOutcome& outcome) {
    last_health_at_ = wall_now();
    if (config_.child.oom_score_adj.inherit &&
        std::chrono::steady_clock::now() - last_oom_check_ >= kOomFollowRideMin)
        on_oom_follow_tick();
    const bool changed = !last_health_ || last_health_->result != outcome.result;
    last_health_ = outcome;
    if (changed) {
        Event e;
        e.kind = Event::Kind::health;
        e.pid = child_pid();
        e.health_result = std::string(to_string(outcome.result));
        e.message = fmt::format("health of pid {}: {}", child_pid(), outcome.describe());
        emit(std::move(e));
    }
    switch (state_) {
    case ChildState::starting:
        if (outcome.healthy()) {
            consecutive_failures_ = 0;
            enter_running("healthy: SERVING");
            probes_.set_running();
            return;
        }
        last_failure_ = outcome.describe();
        if (changed)
            log::info("child pid {} not ready: {}", child_pid(), outcome.describe());
        else
            log::debug("child pid {} not ready: {}", child_pid(), outcome.describe());
        return;
    case ChildState::running:
    case ChildState::unhealthy:
        if (outcome.healthy()) {
            consecutive_failures_ = 0;
            if (state_ == ChildState::unhealthy)
                set_state(ChildState::running, "health recovered: SERVING");
            return;
        }
        ++consecutive_failures_;
        last_failure_ = outcome.describe();
        {
            const std::string what =
                fmt::format("health check failed ({}/{}): {}", consecutive_failures_,
                            config_.health.failure_threshold, outcome.describe());
            if (consecutive_failures_ >= static_cast<unsigned>(config_.health.failure_threshold)) {
                kill_for(fmt::format("{} consecutive failed health checks, last: {}",
                                     consecutive_failures_, outcome.describe()));
                return;
            }
            if (state_ == ChildState::running)
                set_state(ChildState::unhealthy, what);
            else
                log::warn("{}", what);
        }
        return;
    case ChildState::stopped:
    case ChildState::backoff:
    case ChildState::stopping:
    case ChildState::failed:
        return;
    }
}

void Supervisor::kill_for(std::string reason) {
    if (!child_)
        return;
    child_->kill_reason = reason;
    open_incident("hang", reason); // before the dump signal: the child as it hung
    probes_.stop();
    const auto dump = config_.health.dump_signal;
    if (dump && child_->healthy) {
        log::warn("child pid {}: {}; sending {} and SIGKILL {} later", child_->pid, reason,
                  signal_name(*dump), format_duration(config_.health.dump_wait));
        signal_child(*dump, "dump before kill");
        // The SIGKILL belongs to this child, not to the state: a reload or a state change
        // during dump_wait must not cancel it (only the child's exit, or vigild's detach,
        // does).
        const std::uint64_t serial = child_->serial;
        dump_timer_.expires_after(config_.health.dump_wait);
        dump_timer_.async_wait([this, serial](const boost::system::error_code& ec) {
            if (ec || !child_ || child_->serial != serial)
                return;
            signal_child(SIGKILL, "kill after dump");
        });
        return;
    }
    log::warn("child pid {}: {}; sending SIGKILL", child_->pid, reason);
    signal_child(SIGKILL, "kill");
}

// ---- exits and restarts --------------------------------------------------------------

void Supervisor::schedule_restart(const ExitStatus& status, std::string reason) {
    if (!should_restart(config_.restart.policy, status)) {
        child_.reset();
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
    if (!admit_start(now, reason))
        return;
    enter_backoff(delay, std::move(reason));
}

void Supervisor::enter_backoff(Duration delay, std::string reason) {
    next_start_at_ = wall_now() + delay;
    set_state(ChildState::backoff,
              fmt::format("{}; restarting in {}", reason, format_duration(delay)));
    const unsigned gen = generation_;
    backoff_timer_.expires_after(delay);
    backoff_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (!ec)
            loop_lag_.record(backoff_timer_.expiry());
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

void Supervisor::on_child_exit(const ExitStatus& reported) {
    const pid_t pid = child_->pid;
    ExitStatus status = reported;
    // A SIGKILL may be the kernel's OOM killer: its record in the kernel log names the pid.
    // The kernel logs it right after sending the signal, so it is nearly always there by
    // the time we reap; if not, a second look a little later amends the exit.
    if (status.kind == ExitStatus::Kind::signaled && status.value == SIGKILL) {
        status.oom_kill = kmsg_.take(pid);
        if (!status.oom_kill && kmsg_.is_open())
            recheck_oom_kill(pid);
    }
    const auto ran = Clock::now() - child_->started;
    last_exit_ = status;
    last_exit_at_ = wall_now();
    last_exit_pid_ = pid;
    if (status.oom_kill)
        log::warn("child pid {} was killed by the kernel's OOM killer: anon-rss {}, "
                  "oom_score_adj {}{}",
                  pid, format_kib(status.oom_kill->anon_rss_kb), status.oom_kill->oom_score_adj,
                  status.oom_kill->memcg ? " (a memory cgroup's limit)" : "");
    oom_timer_.cancel();
    remove_child_records(config_.daemon.state_dir);
    std::string reason =
        fmt::format("child pid {} exited: {}, after {}", pid, describe(status), ms(ran));
    if (!child_->kill_reason.empty())
        reason += " (killed by vigild: " + child_->kill_reason + ")";
    close_incident(status, reason);
    {
        Event e;
        e.kind = Event::Kind::exit;
        e.pid = pid;
        e.exit = status;
        e.message = reason;
        emit(std::move(e));
    }
    switch (state_) {
    case ChildState::stopping:
        child_.reset();
        enter_stopped(reason);
        return;
    case ChildState::starting:
        last_failure_ = reason; // a death while starting is a failed start at once
        if (roll_back(reason)) {
            child_.reset();
            start_counted("rolled back to the previous configuration");
            return;
        }
        schedule_restart(status, reason);
        return;
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

// ---- stopping ------------------------------------------------------------------------

void Supervisor::stop(std::function<void()> done, std::optional<Duration> timeout) {
    rollback_to_.reset();      // the operator has decided: no start of this reload to judge
    if (restart_after_stop_) { // an explicit stop wins over a pending restart
        restart_after_stop_ = false;
        answer_start_replies(
            CommandOutcome::precondition("a stop request came first: the child stays stopped"));
    }
    first_start_pending_ = false;
    first_start_timer_.cancel();
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
        enter_stopping(timeout);
        return;
    }
}

void Supervisor::enter_stopping(std::optional<Duration> timeout) {
    const Duration limit = timeout.value_or(config_.child.stop_timeout);
    set_state(ChildState::stopping,
              fmt::format("stop requested: sending {} to pid {}, SIGKILL after {}",
                          signal_name(config_.child.stop_signal), child_pid(),
                          format_duration(limit)));
    signal_child(config_.child.stop_signal, "stop");
    const unsigned gen = generation_;
    stop_timer_.expires_after(limit);
    stop_timer_.async_wait([this, gen, limit](const boost::system::error_code& ec) {
        if (ec || gen != generation_)
            return;
        log::warn("child pid {} did not exit within {} of {}; sending SIGKILL", child_pid(),
                  format_duration(limit), signal_name(config_.child.stop_signal));
        on_stop_timeout();
    });
}

void Supervisor::on_stop_timeout() {
    switch (state_) {
    case ChildState::stopping:
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
        start_counted("restart requested");
    }
}

void Supervisor::recheck_oom_kill(pid_t pid) {
    oom_kill_timer_.expires_after(kOomKillRecheck);
    oom_kill_timer_.async_wait([this, pid](const boost::system::error_code& ec) {
        if (ec || last_exit_pid_ != pid || !last_exit_ || last_exit_->oom_kill)
            return;
        auto kill = kmsg_.take(pid);
        if (!kill)
            return;
        last_exit_->oom_kill = std::move(kill);
        for (auto& p : pending_incidents_) // a report not written yet says so too
            if (p.incident.pid == pid && p.incident.exit)
                p.incident.exit->oom_kill = last_exit_->oom_kill;
        const std::string what = fmt::format(
            "child pid {} was killed by the kernel's OOM killer: {}", pid, describe(*last_exit_));
        log::warn("{}", what);
        Event e;
        e.kind = Event::Kind::exit;
        e.pid = pid;
        e.exit = last_exit_;
        e.message = what;
        emit(std::move(e));
    });
}

void Supervisor::enter_failed(std::string reason) {
    remove_child_records(config_.daemon.state_dir);
    set_state(ChildState::failed, std::move(reason));
    answer_start_replies(CommandOutcome{CommandOutcome::Code::failed_precondition,
                                        "the child failed: " + state_reason_});
    log::error("child {} failed; vigild stays up: `vigilctl start` or a reload tries again",
               config_.child.binary);
}

void Supervisor::detach() {
    if (prober_)
        prober_->shutdown(); // the loop must run out of work
    open_incident_.reset();
    flush_incidents(true);
    for (auto* t : {&backoff_timer_, &stop_timer_, &oom_timer_, &startup_timer_,
                    &first_start_timer_, &dump_timer_, &hold_timer_, &oom_kill_timer_})
        t->cancel();
    probes_.stop();
    ++generation_;
    output_.close_all();
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

// ---- OOM score -----------------------------------------------------------------------

Status Supervisor::apply_oom_score(bool write) {
    if (!child_)
        return ok_status();
    const auto& conf = config_.child.oom_score_adj;
    int target = conf.value;
    if (conf.inherit) {
        auto own = read_oom_score(0);
        if (!own) {
            log::warn("failed to read vigild's own oom_score_adj: {}", own.error().message());
            return own.error();
        }
        target = *own;
    }
    last_applied_oom_ = target;
    Status result = ok_status();
    if (write) {
        if (auto st = write_oom_score(child_->pid, target, child_->pidfd.get()); !st) {
            const std::string hint = oom_failure_hint(st.error().code.value());
            const std::string msg =
                fmt::format("failed to set oom_score_adj {} for child pid {}: {}{}{}", target,
                            child_->pid, st.error().code.message(), hint.empty() ? "" : "; ", hint);
            log::warn("{}", msg);
            result = make_error(msg); // msg already names the cause
        }
    }
    auto actual = read_oom_score(child_->pid, child_->pidfd.get());
    if (actual) {
        log::info("oom_score_adj of child pid {}: configured {}, actual {}", child_->pid,
                  conf.inherit ? fmt::format("inherit ({})", target) : std::to_string(target),
                  *actual);
        Event e;
        e.kind = Event::Kind::oom;
        e.pid = child_->pid;
        e.oom_score = *actual;
        e.message = result ? fmt::format("oom_score_adj of pid {} is {}", child_->pid, *actual)
                           : fmt::format("failed to set oom_score_adj {} for pid {}; it stays {}",
                                         target, child_->pid, *actual);
        emit(std::move(e));
    }
    return result;
}

void Supervisor::start_oom_follow() {
    if (!config_.child.oom_score_adj.inherit)
        return;
    const unsigned gen = ++oom_generation_;
    oom_timer_.expires_after(kOomFollowInterval);
    oom_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
        if (!ec)
            loop_lag_.record(oom_timer_.expiry());
        if (ec || gen != oom_generation_)
            return;
        on_oom_follow_tick();
    });
}

void Supervisor::on_oom_follow_tick() {
    if (!child_ || !config_.child.oom_score_adj.inherit)
        return;
    last_oom_check_ = std::chrono::steady_clock::now();
    auto own = read_oom_score(0);
    if (own && *own != last_applied_oom_) {
        log::info("vigild's oom_score_adj changed from {} to {}; applying it to child pid {}",
                  last_applied_oom_, *own, child_->pid);
        (void)apply_oom_score(true);
    }
    start_oom_follow();
}

// ---- reload and commands -------------------------------------------------------------

bool Supervisor::admit_start(Clock::time_point now, const std::string& reason) {
    if (limiter_.try_start(now, config_.restart.start_limit_burst,
                           config_.restart.start_limit_interval))
        return true;
    enter_failed(fmt::format("{}; start limit hit: more than {} starts within {}", reason,
                             config_.restart.start_limit_burst,
                             format_duration(config_.restart.start_limit_interval)));
    return false;
}

namespace {

// What the child is: a change to any of these needs a new child.
bool child_definition_changed(const Config& a, const Config& b) {
    const auto &x = a.child, &y = b.child;
    const bool level_passed = !x.log_level_flag.empty() || !y.log_level_flag.empty();
    return x.binary != y.binary || x.args != y.args || x.config_file != y.config_file ||
           x.config_flag != y.config_flag || x.log_level_flag != y.log_level_flag ||
           x.new_session != y.new_session || x.env != y.env || x.output != y.output ||
           x.config != y.config || (level_passed && a.daemon.log_level != b.daemon.log_level) ||
           x.user != y.user || x.group != y.group ||
           x.supplementary_groups != y.supplementary_groups ||
           x.working_directory != y.working_directory || x.umask != y.umask ||
           x.env_files != y.env_files || x.inherit_env != y.inherit_env ||
           x.no_new_privileges != y.no_new_privileges || x.limits != y.limits;
}

bool health_changed(const HealthConfig& a, const HealthConfig& b) {
    return a.kind != b.kind || a.address != b.address || a.service != b.service ||
           a.timeout != b.timeout || a.interval != b.interval || a.command != b.command ||
           a.watchdog != b.watchdog;
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
    const bool probe_changed = health_changed(config_.health, next.health);
    // Rollback: only to a configuration whose child was healthy, and the known-good one
    // stays the target while a reloaded child is still on trial.
    if (!next.restart.rollback)
        rollback_to_.reset();
    else if (child_changed && !rollback_to_ &&
             (state_ == ChildState::running || state_ == ChildState::unhealthy))
        rollback_to_ = config_;
    config_ = std::move(next);
    incidents_.configure(config_.incidents.dir, static_cast<unsigned>(config_.incidents.keep));
    resolve_identity(); // names may point elsewhere now, even with the same config
    if (probe_changed)
        reconfigure_prober();
    {
        Event e;
        e.kind = Event::Kind::reload;
        e.pid = child_pid();
        e.message = child_changed ? "configuration reloaded; the child's definition changed"
                                  : "configuration reloaded";
        emit(std::move(e));
    }
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
            ++restart_count_;
            enter_stopping();
            return true;
        }
        if (oom_changed) {
            (void)apply_oom_score(true);
            start_oom_follow();
        }
        if (probe_changed && child_ && !child_->kill_reason.empty()) {
            // vigild is killing this child (dump_wait, or the SIGKILL is on its way): the
            // kill goes on, and the new health settings apply to the next child.
            log::info("reload: child pid {} is being killed ({}); the new health settings "
                      "apply to the next child",
                      child_->pid, child_->kill_reason);
        } else if (probe_changed) {
            // Health settings changed: probe the (same) child afresh, or stop probing.
            probes_.stop();
            consecutive_failures_ = 0;
            if (health_enabled()) {
                probes_.start(*prober_, probe_schedule_for(config_.health),
                              state_ == ChildState::starting ? ProbeScheduler::Phase::starting
                                                             : ProbeScheduler::Phase::running);
            } else if (state_ != ChildState::running) {
                enter_running("health checks turned off by reload");
            }
        }
        return false;
    case ChildState::stopped:
    case ChildState::backoff:
    case ChildState::stopping:
        return false;
    }
    return false;
}

void Supervisor::open_incident(std::string kind, std::string reason) {
    if (!incidents_.enabled() || !child_)
        return;
    Incident in;
    in.at = wall_now();
    in.pid = child_->pid;
    in.id = incident_id(in.at, in.pid);
    in.kind = std::move(kind);
    in.reason = std::move(reason);
    in.probes.assign(recent_probes_.begin(), recent_probes_.end());
    if (in.kind == "hang")
        in.proc = collect_proc_evidence(in.pid);
    incident_output_from_ = output_.next_seq();
    open_incident_ = std::move(in);
}

void Supervisor::close_incident(const ExitStatus& status, std::string reason) {
    if (!incidents_.enabled() || !child_)
        return;
    const bool ours = open_incident_ && open_incident_->pid == child_->pid;
    // A death nobody asked for: the child was meant to run (not stopping, not killed by
    // vigild for a stop).
    const bool unexpected = !ours && child_->kill_reason.empty() &&
                            (state_ == ChildState::running || state_ == ChildState::unhealthy ||
                             state_ == ChildState::starting);
    if (!ours && !unexpected)
        return;
    if (!ours) {
        open_incident("death", reason);
        if (!open_incident_)
            return;
        // The last lines it wrote before dying: a panic's stack is there.
        incident_output_from_ = 0;
    }
    open_incident_->exit = status;
    // The report waits a moment for the output still in the pipes (the end of a dump,
    // or of a panic), then is written.
    pending_incidents_.push_back(PendingIncident{std::move(*open_incident_), incident_output_from_,
                                                 Clock::now() + kIncidentOutputGrace});
    open_incident_.reset();
    if (pending_incidents_.size() == 1)
        arm_incident_timer();
}

void Supervisor::arm_incident_timer() {
    incident_timer_.expires_at(pending_incidents_.front().due);
    incident_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec)
            return; // cancelled: detach() wrote what was pending
        flush_incidents(false);
    });
}

void Supervisor::flush_incidents(bool all) {
    while (!pending_incidents_.empty() && (all || pending_incidents_.front().due <= Clock::now())) {
        PendingIncident p = std::move(pending_incidents_.front());
        pending_incidents_.pop_front();
        write_incident(std::move(p.incident), p.output_from);
    }
    if (!all && !pending_incidents_.empty())
        arm_incident_timer();
}

void Supervisor::write_incident(Incident in, std::uint64_t output_from) {
    if (config_.child.output != OutputMode::capture) {
        in.output_note = "not captured: [child] output = \"inherit\" sends it where vigild's "
                         "output goes";
    } else {
        std::deque<std::string> lines;
        for (const auto& l : output_.lines())
            if (l.pid == in.pid && l.seq >= output_from) {
                lines.push_back(l.stream + ": " + l.text);
                if (lines.size() > kIncidentLines)
                    lines.pop_front();
            }
        in.output.assign(lines.begin(), lines.end());
        in.output_note = output_from == 0
                             ? "its last captured lines"
                             : "what it wrote from the kill decision to its death (dump_wait)";
    }
    const auto began = Clock::now();
    auto id = incidents_.write(in);
    const auto took = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
    if (!id) {
        log::warn("could not write the incident report for pid {}: {}", in.pid,
                  id.error().message());
        return;
    }
    log::info("incident report {} written ({} of pid {}; {:.1f}ms): vigilctl incidents {}", *id,
              in.kind, in.pid, took, *id);
}

void Supervisor::reconfigure_prober() {
    if (prober_injected_)
        return;
    if (auto* g = dynamic_cast<GrpcHealthProber*>(prober_.get());
        g != nullptr && config_.health.kind == HealthKind::grpc) {
        g->configure(config_.health); // the next reset() opens a channel to the new address
        return;
    }
    // Another kind, or settings the prober took at construction: a new one. The scheduler
    // lets go of the old one first (its calls out end by themselves; their answers are
    // stale).
    probes_.stop();
    prober_.reset(); // a notify socket is unbound before its successor binds the name
    prober_ = new_prober();
}

NotifyProber* Supervisor::notify_prober() const {
    return config_.health.kind == HealthKind::notify ? dynamic_cast<NotifyProber*>(prober_.get())
                                                     : nullptr;
}

std::unique_ptr<HealthProber> Supervisor::new_prober() {
    if (config_.health.kind != HealthKind::notify)
        return make_prober(io_, reaper_, config_.health);
    // One name per state dir, the same after a vigild restart: an adopted child's
    // NOTIFY_SOCKET still reaches the new vigild.
    std::uint64_t h = 1469598103934665603ull; // FNV-1a
    for (unsigned char c : config_.daemon.state_dir)
        h = (h ^ c) * 1099511628211ull;
    auto p =
        std::make_unique<NotifyProber>(io_, config_.health, fmt::format("vigil-notify-{:016x}", h));
    if (auto st = p->open(); !st)
        log::error("{}: the child's READY=1 cannot be heard; it will not become healthy",
                   st.error().message());
    p->set_on_ready([this] { probes_.probe_now(); });
    return p;
}

bool Supervisor::roll_back(const std::string& why) {
    if (!rollback_to_)
        return false;
    Config previous = std::move(*rollback_to_);
    rollback_to_.reset();
    rejected_ = config_;
    const bool probe_changed = health_changed(config_.health, previous.health);
    config_ = std::move(previous);
    resolve_identity();
    if (probe_changed)
        reconfigure_prober();
    rollback_note_ = "the reloaded configuration's child " + why;
    rollback_at_ = wall_now();
    const std::string what =
        fmt::format("rolled back to the previous configuration: the reloaded one's child {} "
                    "(the rejected configuration: vigilctl config --rejected)",
                    why);
    log::warn("{}", what);
    Event e;
    e.kind = Event::Kind::reload;
    e.pid = child_pid();
    e.message = what;
    emit(std::move(e));
    return true; // the caller starts the child on it
}

void Supervisor::answer_start_replies(const CommandOutcome& outcome) {
    auto replies = std::move(start_replies_);
    start_replies_.clear();
    for (auto& r : replies)
        r(outcome);
}

void Supervisor::start_command(ControlBackend::Reply reply) {
    clear_hold();
    switch (state_) {
    case ChildState::stopped:
    case ChildState::failed:
        first_start_pending_ = false;
        first_start_timer_.cancel();
        limiter_.reset();
        backoff_attempt_ = 0;
        start_replies_.push_back(std::move(reply));
        start_counted("start requested");
        return;
    case ChildState::backoff:
        start_replies_.push_back(std::move(reply));
        ++restart_count_;
        enter_starting_fresh("start requested during back-off");
        return;
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
        // Done already, as `systemctl start` of an active unit.
        reply(CommandOutcome::success(
            fmt::format("the child is already {} (pid {})", to_string(state_), child_pid())));
        return;
    case ChildState::stopping:
        reply(CommandOutcome::precondition("the child is stopping; start it once it is stopped"));
        return;
    }
}

void Supervisor::stop_command(std::optional<Duration> timeout, ControlBackend::Reply reply,
                              std::optional<Duration> hold_for, std::string reason) {
    // Recorded first: a vigild that dies during the stop must not start the child again.
    set_hold(hold_for, std::move(reason));
    switch (state_) {
    case ChildState::stopped:
    case ChildState::failed:
        // Done already, as `systemctl stop` of an inactive unit; the hold is recorded.
        reply(CommandOutcome::success(
            fmt::format("the child is already {}; it stays stopped until `vigilctl start`",
                        to_string(state_))));
        return;
    case ChildState::backoff:
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
    case ChildState::stopping:
        stop(
            [this, reply = std::move(reply), had_child = child_ != nullptr] {
                // Only a child that was running when asked has an exit to tell about; in
                // back-off the last exit is the earlier crash's.
                reply(CommandOutcome::success(
                    had_child && last_exit_
                        ? "stopped: " + describe(*last_exit_)
                        : "stopped (it was waiting to restart; no child was running)"));
            },
            timeout);
        return;
    }
}

void Supervisor::restart_command(ControlBackend::Reply reply) {
    switch (state_) {
    case ChildState::stopped:
    case ChildState::failed:
    case ChildState::backoff:
        start_command(std::move(reply));
        return;
    case ChildState::starting:
    case ChildState::running:
    case ChildState::unhealthy:
        start_replies_.push_back(std::move(reply));
        restart_after_stop_ = true;
        ++restart_count_;
        enter_stopping();
        return;
    case ChildState::stopping:
        reply(CommandOutcome::precondition("the child is stopping; start it once it is stopped"));
        return;
    }
}

CommandOutcome Supervisor::signal_command(int sig) {
    if (!child_)
        return CommandOutcome::precondition(
            fmt::format("no child to signal (state {})", to_string(state_)));
    if (auto st = pidfd_send_signal(child_->pidfd.get(), sig); !st)
        return CommandOutcome{CommandOutcome::Code::internal,
                              fmt::format("failed to send {} to pid {}: {}", signal_name(sig),
                                          child_->pid, st.error().code.message())};
    log::info("sent {} to child pid {} (requested over the control socket)", signal_name(sig),
              child_->pid);
    Event e;
    e.kind = Event::Kind::signal;
    e.pid = child_->pid;
    e.message = fmt::format("sent {} to pid {} (vigilctl kill)", signal_name(sig), child_->pid);
    emit(std::move(e));
    return CommandOutcome::success(fmt::format("sent {} to pid {}", signal_name(sig), child_->pid));
}

CommandOutcome Supervisor::set_oom_score_command(OomScore score) {
    if (!score.inherit && (score.value < kOomScoreMin || score.value > kOomScoreMax))
        return CommandOutcome::invalid(
            fmt::format("oom_score_adj {} is outside -1000..1000", score.value));
    const OomScore before = config_.child.oom_score_adj;
    config_.child.oom_score_adj = score;
    if (!child_)
        return CommandOutcome::success(
            fmt::format("oom_score_adj {} applies to the next child", to_string(score)));
    auto st = apply_oom_score(true);
    if (!st) {
        // The write failed, so the child's score did not change: only the setting goes
        // back (apply_oom_score already reported the failure, once).
        config_.child.oom_score_adj = before;
        if (auto own = read_oom_score(0); before.inherit && own)
            last_applied_oom_ = *own;
        else if (!before.inherit)
            last_applied_oom_ = before.value;
        start_oom_follow();
        return CommandOutcome::precondition(st.error().message());
    }
    start_oom_follow();
    auto actual = read_oom_score(child_->pid, child_->pidfd.get());
    return CommandOutcome::success(fmt::format("oom_score_adj of pid {} is now {}", child_->pid,
                                               actual ? std::to_string(*actual) : "unknown"));
}

StatusSnapshot Supervisor::brief_status() const {
    StatusSnapshot s;
    s.state = std::string(to_string(state_));
    s.restart_count = restart_count_;
    if (child_) {
        s.pid = child_->pid;
        s.started_at = child_->started_wall;
        if (auto a = read_oom_score(child_->pid, child_->pidfd.get()))
            s.oom_actual = *a;
    }
    return s;
}

StatusSnapshot Supervisor::status() const {
    StatusSnapshot s;
    s.state = std::string(to_string(state_));
    s.state_reason = state_reason_;
    if (hold_) {
        s.held = true;
        s.held_since = hold_->since;
        s.held_until = hold_->until;
        s.hold_reason = hold_->reason;
    }
    s.rollback = rollback_note_;
    s.rolled_back_at = rollback_at_;
    if (auto* n = notify_prober(); n != nullptr && child_)
        s.notify_status = n->status_text();
    if (incidents_.enabled() && !incidents_.list().empty()) {
        s.latest_incident = incidents_.list().front().id;
        s.latest_incident_reason = incidents_.list().front().reason;
    }
    if (state_ == ChildState::backoff)
        s.next_start_at = next_start_at_;
    s.state_since = state_since_;
    if (child_) {
        s.pid = child_->pid;
        s.adopted = child_->adopted;
        s.started_at = child_->started_wall;
        if (auto a = read_oom_score(child_->pid, child_->pidfd.get()))
            s.oom_actual = *a;
    }
    s.restart_count = restart_count_;
    s.last_exit = last_exit_;
    s.last_exit_at = last_exit_at_;
    s.health_enabled = health_enabled();
    // Health describes the child there is, not the last one: nothing without a child.
    if (child_) {
        s.consecutive_health_failures = consecutive_failures_;
        s.last_health_check = last_health_at_;
        if (last_health_)
            s.last_health_result = last_health_->describe();
    }
    s.oom_configured = config_.child.oom_score_adj;
    s.child_binary = config_.child.binary;
    if (child_ && !child_->differs.empty())
        s.child_binary = child_->identity.exe + " (" + child_->differs + ")";
    s.child_args = child_ && !child_->argv.empty() ? child_->argv : child_argv();
    s.vigild_version = VIGIL_VERSION;
    s.vigild_pid = ::getpid();
    s.loop_lag = loop_lag_.summary();
    s.output_mode = std::string(to_string(config_.child.output));
    // The user, directory and limits the child runs with: read back for a live child.
    s.child_working_directory = config_.child.working_directory;
    std::optional<std::vector<RLimitValue>> actual_limits;
    if (child_) {
        s.child_user = child_->user;
        if (auto cwd = read_cwd(child_->pid))
            s.child_working_directory = *cwd;
        if (!config_.child.limits.empty())
            if (auto l = read_limits(child_->pid))
                actual_limits = std::move(*l);
    } else {
        s.child_user = config_.child.user.empty() ? own_user() : config_.child.user;
    }
    for (const auto& l : config_.child.limits) {
        const auto r = static_cast<size_t>(l.resource);
        s.child_limits.emplace_back(rlimit_name(l.resource),
                                    format_rlimit(actual_limits && r < actual_limits->size()
                                                      ? (*actual_limits)[r]
                                                      : l.value));
    }
    return s;
}

} // namespace vigil
