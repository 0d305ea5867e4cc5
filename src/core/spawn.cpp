#include "vigil/spawn.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <linux/close_range.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace vigil {
namespace {

constexpr size_t kChildStackSize = 256 * 1024;
constexpr int kKernelSigsetSize = 8; // _NSIG / 8 on Linux
constexpr int kMaxSignal = 64;

enum class Stage : int {
    setsid = 1,
    oom,
    rlimit,
    setgroups,
    setgid,
    setuid,
    no_new_privs,
    chdir,
    dup,
    exec
};
struct ChildReport {
    Stage stage;
    int err;
    int index; // Stage::rlimit: which entry of the limits
};

// The spawn's steps as raw data the child reads (no allocation after clone).
struct RawLimit {
    int resource;
    struct rlimit value;
};

struct ChildArgs {
    const char* path;
    char* const* argv;
    char* const* envp;
    bool new_session;
    const char* oom;
    size_t oom_len;
    int report_fd;
    int stdout_fd;
    int stderr_fd;
    int max_fd; // for kernels without close_range: the highest fd to mark close-on-exec
    const RawLimit* limits;
    size_t limit_count;
    const gid_t* groups; // nullptr: keep
    size_t group_count;
    long gid; // -1: keep
    long uid; // -1: keep
    bool no_new_privs;
    const char* cwd; // nullptr: keep
    long umask;      // -1: keep
};

struct KernelSigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;
};

// Runs in the child, on its own stack, sharing vigild's memory until execve. Only raw
// system calls: no allocation, no locks, no sanitizer instrumentation. errno is the
// suspended parent thread's slot, which nothing else touches until the child is gone.
__attribute__((no_sanitize("address", "undefined"))) void report(int fd, Stage stage, long err,
                                                                 int index = 0) {
    ChildReport r{stage, static_cast<int>(err), index};
    syscall(SYS_write, fd, &r, sizeof r);
}

// Reports the failed step and exits: the parent turns it into a failed start.
__attribute__((no_sanitize("address", "undefined"))) void fail_step(int fd, Stage stage,
                                                                    int index = 0) {
    report(fd, stage, errno, index);
    syscall(SYS_exit_group, 127);
}

__attribute__((no_sanitize("address", "undefined"))) int child_main(void* p) {
    auto* a = static_cast<ChildArgs*>(p);
    // Dispositions: handlers would run vigild's code, and SIG_IGN survives exec.
    KernelSigaction dfl{SIG_DFL, 0, nullptr, 0};
    for (int sig = 1; sig <= kMaxSignal; ++sig)
        syscall(SYS_rt_sigaction, sig, &dfl, nullptr, kKernelSigsetSize);
    unsigned long empty = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, nullptr, kKernelSigsetSize);

    if (a->new_session && syscall(SYS_setsid) < 0) {
        report(a->report_fd, Stage::setsid, errno);
        syscall(SYS_exit_group, 127);
    }
    if (a->oom != nullptr) {
        long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        long rc = fd < 0 ? fd : syscall(SYS_write, fd, a->oom, a->oom_len);
        if (rc < 0)
            report(a->report_fd, Stage::oom, errno); // not fatal: the parent warns
        if (fd >= 0)
            syscall(SYS_close, fd);
    }
    for (size_t i = 0; i < a->limit_count; ++i)
        if (syscall(SYS_setrlimit, a->limits[i].resource, &a->limits[i].value) != 0)
            fail_step(a->report_fd, Stage::rlimit, static_cast<int>(i));
    if (a->groups != nullptr && syscall(SYS_setgroups, a->group_count, a->groups) != 0)
        fail_step(a->report_fd, Stage::setgroups);
    if (a->gid >= 0 && syscall(SYS_setresgid, a->gid, a->gid, a->gid) != 0)
        fail_step(a->report_fd, Stage::setgid);
    if (a->uid >= 0 && syscall(SYS_setresuid, a->uid, a->uid, a->uid) != 0)
        fail_step(a->report_fd, Stage::setuid);
    if (a->no_new_privs && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_step(a->report_fd, Stage::no_new_privs);
    if (a->cwd != nullptr && syscall(SYS_chdir, a->cwd) != 0)
        fail_step(a->report_fd, Stage::chdir);
    if (a->umask >= 0)
        syscall(SYS_umask, a->umask);
    if (a->stdout_fd >= 0 && syscall(SYS_dup3, a->stdout_fd, 1, 0) < 0) {
        report(a->report_fd, Stage::dup, errno);
        syscall(SYS_exit_group, 127);
    }
    if (a->stderr_fd >= 0 && syscall(SYS_dup3, a->stderr_fd, 2, 0) < 0) {
        report(a->report_fd, Stage::dup, errno);
        syscall(SYS_exit_group, 127);
    }
    // Every fd above 2 closes at exec (the report pipe too, which is how the parent learns
    // that exec succeeded). Kernels before 5.11 have no CLOSE_RANGE_CLOEXEC (before 5.9 no
    // close_range at all): then each fd up to the highest the parent saw is marked one by
    // one, so no fd of vigild's leaks into the child either way.
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd <= a->max_fd; ++fd)
            syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
    }
    syscall(SYS_execve, a->path, a->argv, a->envp);
    report(a->report_fd, Stage::exec, errno);
    syscall(SYS_exit_group, 127);
    return 127;
}

// The highest fd open in vigild now, plus a margin for fds other threads open between this
// look and the clone (only used where close_range is missing).
int highest_fd_bound() {
    constexpr int kMargin = 256;
    int highest = 2;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        const std::string name = e.path().filename().string();
        int fd = 0;
        auto [p, perr] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (perr == std::errc() && fd > highest)
            highest = fd;
    }
    if (ec) {
        struct rlimit rl;
        if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            return static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
        return 1 << 20;
    }
    return highest + kMargin;
}

// Whether this kernel has close_range with CLOSE_RANGE_CLOEXEC (Linux 5.11+). An empty
// range far above any open fd changes nothing when it works.
bool have_close_range_cloexec() {
    static const bool have = ::syscall(SYS_close_range, ~0U - 1, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
    return have;
}

// What failed, as the operator would write the call: "setrlimit(RLIMIT_NOFILE,
// 1024:2000000)", "setuid(65534)", "chdir(/srv)".
std::string describe_step(const SpawnSpec& spec, const ChildReport& r) {
    switch (r.stage) {
    case Stage::setsid:
        return "setsid()";
    case Stage::oom:
        return "write of /proc/self/oom_score_adj";
    case Stage::rlimit: {
        if (r.index < 0 || static_cast<size_t>(r.index) >= spec.limits.size())
            return "setrlimit";
        const auto& l = spec.limits[static_cast<size_t>(r.index)];
        return fmt::format("setrlimit({}, {})", rlimit_name(l.resource, true),
                           format_rlimit(l.value));
    }
    case Stage::setgroups:
        return fmt::format("setgroups({})", spec.groups
                                                ? fmt::format("{}", fmt::join(*spec.groups, ","))
                                                : std::string());
    case Stage::setgid:
        return fmt::format("setgid({})", spec.gid.value_or(0));
    case Stage::setuid:
        return fmt::format("setuid({})", spec.uid.value_or(0));
    case Stage::no_new_privs:
        return "prctl(PR_SET_NO_NEW_PRIVS)";
    case Stage::chdir:
        return fmt::format("chdir({})", spec.working_directory);
    case Stage::dup:
        return "redirect of the output";
    case Stage::exec:
        return "execve";
    }
    return "?";
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
    std::vector<char*> out;
    out.reserve(v.size() + 1);
    for (const auto& s : v)
        out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

} // namespace

std::optional<std::string> find_executable(const std::string& name) {
    if (name.empty())
        return std::nullopt;
    if (name.find('/') != std::string::npos)
        return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos)
            end = dirs.size();
        const std::string dir = end > start ? dirs.substr(start, end - start) : std::string(".");
        std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        start = end + 1;
    }
    return std::nullopt;
}

std::optional<std::string> resolve_binary(const std::string& name) {
    auto path = find_executable(name);
    if (!path)
        return std::nullopt;
    char buf[PATH_MAX];
    if (::realpath(path->c_str(), buf) == nullptr)
        return path;
    return std::string(buf);
}

Result<SpawnedChild> spawn_child(const SpawnSpec& spec) {
    auto path = find_executable(spec.binary);
    if (!path) {
        const char* p = std::getenv("PATH");
        return make_error(ENOENT, fmt::format("failed to exec {}: not found on PATH ({})",
                                              spec.binary, p ? p : ""));
    }
    auto argv = c_strings(spec.argv);
    auto envp = c_strings(spec.env);
    std::string oom = spec.oom_score ? std::to_string(*spec.oom_score) : std::string();

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0)
        return make_error(errno, "failed to create the exec-report pipe");
    UniqueFd report_r(pipefd[0]), report_w(pipefd[1]);

    void* stack = ::mmap(nullptr, kChildStackSize, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return make_error(errno, "failed to allocate the spawn stack");

    std::vector<RawLimit> limits;
    for (const auto& l : spec.limits)
        limits.push_back(RawLimit{l.resource, {l.value.soft, l.value.hard}});

    ChildArgs args{path->c_str(),
                   argv.data(),
                   envp.data(),
                   spec.new_session,
                   spec.oom_score ? oom.c_str() : nullptr,
                   oom.size(),
                   report_w.get(),
                   spec.stdout_fd,
                   spec.stderr_fd,
                   have_close_range_cloexec() ? 0 : highest_fd_bound(),
                   limits.data(),
                   limits.size(),
                   spec.groups ? spec.groups->data() : nullptr,
                   spec.groups ? spec.groups->size() : 0,
                   spec.gid ? static_cast<long>(*spec.gid) : -1,
                   spec.uid ? static_cast<long>(*spec.uid) : -1,
                   spec.no_new_privileges,
                   spec.working_directory.empty() ? nullptr : spec.working_directory.c_str(),
                   spec.umask ? static_cast<long>(*spec.umask) : -1};

    // No signal handler may run in the child while it shares our memory.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kChildStackSize,
                        CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::munmap(stack, kChildStackSize);
    if (pid < 0)
        return make_error(clone_errno, "failed to start a child process (clone)");

    SpawnedChild child;
    child.pid = pid;
    child.pidfd = UniqueFd(pidfd);
    child.exe = *path;
    report_w.reset();

    ChildReport r;
    for (;;) {
        ssize_t n = ::read(report_r.get(), &r, sizeof r);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != static_cast<ssize_t>(sizeof r))
            break; // EOF: exec succeeded
        switch (r.stage) {
        case Stage::oom:
            child.oom_errno = r.err;
            continue;
        case Stage::setsid:
        case Stage::rlimit:
        case Stage::setgroups:
        case Stage::setgid:
        case Stage::setuid:
        case Stage::no_new_privs:
        case Stage::chdir:
        case Stage::dup:
        case Stage::exec: {
            // The child has exited (CLONE_VFORK returned after its exit); reap it here so
            // the SIGCHLD reaper never sees an unknown pid.
            int status;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (r.stage == Stage::exec)
                return make_error(r.err, fmt::format("failed to exec {}", *path));
            return make_error(r.err,
                              fmt::format("failed to start {}: {}", *path, describe_step(spec, r)));
        }
        }
    }
    return child;
}

} // namespace vigil
