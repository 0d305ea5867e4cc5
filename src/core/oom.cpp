#include "vigil/oom.hpp"

#include "vigil/fs_util.hpp"

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

} // namespace

Result<int> read_oom_score(pid_t pid) {
    auto text = read_file_nofollow(oom_path(pid));
    if (!text)
        return text.error();
    std::string s = *text;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
        return make_error(EINVAL, "unexpected content in " + oom_path(pid));
    return v;
}

Status write_oom_score(pid_t pid, int score) {
    const std::string path = oom_path(pid);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open " + path);
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
