#include "vigil/oom.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/process.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <unistd.h>

namespace vigil {
namespace {

std::string oom_path(pid_t pid) {
    return pid == 0 ? std::string("/proc/self/oom_score_adj")
                    : fmt::format("/proc/{}/oom_score_adj", pid);
}

// The open file names the pidfd's process only if that process is still alive after the
// open: a live process's pid cannot have been reused.
Status check_still_alive(pid_t pid, int pidfd) {
    if (pidfd >= 0 && pidfd_exited(pidfd))
        return make_error(ESRCH, fmt::format("pid {} has exited", pid));
    return ok_status();
}

} // namespace

Result<int> read_oom_score(pid_t pid, int pidfd) {
    const std::string path = oom_path(pid);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open " + path);
    if (auto alive = check_still_alive(pid, pidfd); !alive)
        return alive.error();
    char buf[32];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n < 0)
        return make_error(errno, "failed to read " + path);
    std::string s(buf, static_cast<size_t>(n));
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
        return make_error(EINVAL, "unexpected content in " + oom_path(pid));
    return v;
}

Status write_oom_score(pid_t pid, int score, int pidfd) {
    const std::string path = oom_path(pid);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open " + path);
    if (auto alive = check_still_alive(pid, pidfd); !alive)
        return alive;
    const std::string text = std::to_string(score);
    if (::write(fd.get(), text.data(), text.size()) < 0)
        return make_error(errno, fmt::format("failed to set oom_score_adj {} in {}", score, path));
    return ok_status();
}

std::string oom_failure_hint(int err) {
    if (err == EPERM || err == EACCES)
        return "lowering oom_score_adj needs CAP_SYS_RESOURCE (run vigild as root with that "
               "capability, or configure a score at or above the current one)";
    return {};
}

} // namespace vigil
