#include "vigil/spawn.hpp"

#include <fmt/format.h>

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
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace vigil {
namespace {

constexpr size_t kChildStackSize = 256 * 1024;
// The same name as state_record.hpp's kSpawnTokenEnv (spawn does not depend on records).
constexpr std::string_view kSpawnTokenEnvName = "VIGIL_SPAWN_TOKEN";
constexpr int kKernelSigsetSize = 8; // _NSIG / 8 on Linux
constexpr int kMaxSignal = 64;

enum class Stage : int { setsid = 1, oom = 2, dup = 3, exec = 4 };
struct ChildReport {
    Stage stage;
    int err;
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
__attribute__((no_sanitize("address", "undefined"))) void report(int fd, Stage stage, long err) {
    ChildReport r{stage, static_cast<int>(err)};
    syscall(SYS_write, fd, &r, sizeof r);
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

std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto name = kv.substr(0, kv.find('='));
        if (name == "NOTIFY_SOCKET" || name.starts_with("LISTEN_") ||
            name.starts_with("WATCHDOG_") || name == kSpawnTokenEnvName ||
            extra.count(std::string(name)))
            continue;
        env.emplace_back(kv);
    }
    for (const auto& [k, v] : extra)
        env.push_back(k + "=" + v);
    return env;
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

    ChildArgs args{path->c_str(),
                   argv.data(),
                   envp.data(),
                   spec.new_session,
                   spec.oom_score ? oom.c_str() : nullptr,
                   oom.size(),
                   report_w.get(),
                   spec.stdout_fd,
                   spec.stderr_fd,
                   have_close_range_cloexec() ? 0 : highest_fd_bound()};

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
        case Stage::dup:
        case Stage::exec: {
            // The child has exited (CLONE_VFORK returned after its exit); reap it here so
            // the SIGCHLD reaper never sees an unknown pid.
            int status;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            const char* what = r.stage == Stage::exec     ? "failed to exec"
                               : r.stage == Stage::setsid ? "failed to setsid before exec"
                                                          : "failed to redirect output of";
            return make_error(r.err, fmt::format("{} {}", what, *path));
        }
        }
    }
    return child;
}

} // namespace vigil
