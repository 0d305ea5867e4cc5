#include "vigil/process.hpp"

#include "vigil/fs_util.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <sstream>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vigil {
namespace {

// /proc/PID/environ is at most what execve accepted (ARG_MAX-bound, a few MiB).
constexpr size_t kMaxEnvironBytes = 8u << 20;

} // namespace

Result<std::string> read_boot_id() {
    auto r = read_file_nofollow("/proc/sys/kernel/random/boot_id");
    if (!r)
        return r.error();
    std::string id = *r;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
        id.pop_back();
    return id;
}

Result<std::uint64_t> read_start_time(pid_t pid) {
    const std::string path = fmt::format("/proc/{}/stat", pid);
    auto r = read_file_nofollow(path);
    if (!r)
        return r.error();
    // "pid (comm) state ppid ...": comm may hold anything, so parse from the last ')'.
    const std::string& s = *r;
    auto close = s.rfind(')');
    if (close == std::string::npos)
        return make_error(EINVAL, "malformed " + path);
    // After ") " come fields 3, 4, ...; field 22 is the 20th of them.
    size_t pos = close + 1;
    for (int field = 3; field <= 22; ++field) {
        while (pos < s.size() && s[pos] == ' ')
            ++pos;
        size_t end = s.find(' ', pos);
        if (end == std::string::npos)
            end = s.size();
        if (field == 22) {
            std::uint64_t v = 0;
            auto token = s.substr(pos, end - pos);
            if (token.empty() || token.find_first_not_of("0123456789") != std::string::npos)
                return make_error(EINVAL, "malformed start time in " + path);
            v = std::stoull(token);
            return v;
        }
        pos = end;
    }
    return make_error(EINVAL, "short " + path);
}

namespace {

// readlink(2) of a /proc link ("exe", "cwd").
Result<std::string> read_proc_link(pid_t pid, const char* name) {
    const std::string path = fmt::format("/proc/{}/{}", pid, name);
    char buf[PATH_MAX + 32];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
    if (n < 0)
        return make_error(errno, "failed to read " + path);
    return std::string(buf, static_cast<size_t>(n));
}

} // namespace

Result<std::string> read_exe(pid_t pid) {
    return read_proc_link(pid, "exe");
}

Result<uid_t> read_uid(pid_t pid) {
    const std::string path = fmt::format("/proc/{}/status", pid);
    auto r = read_file_nofollow(path, 64 * 1024);
    if (!r)
        return r.error();
    auto pos = r->find("\nUid:");
    if (pos == std::string::npos)
        return make_error(EINVAL, "no Uid: line in " + path);
    pos += 5;
    while (pos < r->size() && ((*r)[pos] == '\t' || (*r)[pos] == ' '))
        ++pos;
    uid_t uid = 0;
    auto [p, ec] = std::from_chars(r->data() + pos, r->data() + r->size(), uid);
    if (ec != std::errc())
        return make_error(EINVAL, "malformed Uid: line in " + path);
    return uid;
}

Result<std::vector<RLimitValue>> read_limits(pid_t pid) {
    const std::string path = fmt::format("/proc/{}/limits", pid);
    auto r = read_file_nofollow(path, 64 * 1024);
    if (!r)
        return r.error();
    // A header line, then one line per resource in RLIMIT_* order: a 26-column name, then
    // the soft and hard limits ("unlimited" or a number) and the units.
    constexpr size_t kNameWidth = 26;
    std::vector<RLimitValue> out;
    std::istringstream in(*r);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        if (line.size() <= kNameWidth)
            break;
        std::istringstream fields(line.substr(kNameWidth));
        std::string soft, hard;
        fields >> soft >> hard;
        auto side = [](const std::string& s) -> rlim_t {
            return s == "unlimited" ? RLIM_INFINITY : std::strtoull(s.c_str(), nullptr, 10);
        };
        out.push_back(RLimitValue{side(soft), side(hard)});
    }
    return out;
}

Result<std::vector<std::string>> read_cmdline(pid_t pid) {
    auto text = read_file_nofollow(fmt::format("/proc/{}/cmdline", pid), kMaxEnvironBytes);
    if (!text)
        return text.error();
    std::vector<std::string> argv;
    for (size_t pos = 0; pos < text->size();) {
        size_t end = text->find('\0', pos);
        if (end == std::string::npos)
            end = text->size();
        argv.emplace_back(text->substr(pos, end - pos));
        pos = end + 1;
    }
    return argv;
}

Result<std::string> read_cwd(pid_t pid) {
    return read_proc_link(pid, "cwd");
}

Result<ProcessIdentity> read_identity(pid_t pid) {
    ProcessIdentity id;
    id.pid = pid;
    auto st = read_start_time(pid);
    if (!st)
        return st.error();
    id.start_time = *st;
    auto boot = read_boot_id();
    if (!boot)
        return boot.error();
    id.boot_id = *boot;
    auto exe = read_exe(pid);
    if (!exe)
        return exe.error();
    id.exe = *exe;
    auto uid = read_uid(pid);
    if (!uid)
        return uid.error();
    id.uid = *uid;
    return id;
}

std::optional<std::chrono::system_clock::time_point> process_start_wall_time(std::uint64_t ticks) {
    auto stat = read_file_nofollow("/proc/stat");
    if (!stat)
        return std::nullopt;
    auto pos = stat->find("\nbtime ");
    if (pos == std::string::npos)
        return std::nullopt;
    const long long btime = std::atoll(stat->c_str() + pos + 7);
    const long hz = ::sysconf(_SC_CLK_TCK);
    if (btime <= 0 || hz <= 0)
        return std::nullopt;
    const auto since_boot = std::chrono::milliseconds(static_cast<long long>(ticks) * 1000 / hz);
    return std::chrono::system_clock::time_point(std::chrono::seconds(btime)) + since_boot;
}

std::string identity_mismatch(const ProcessIdentity& recorded, const ProcessIdentity& actual) {
    if (recorded.boot_id != actual.boot_id)
        return fmt::format("the record is from another boot ({} now {})", recorded.boot_id,
                           actual.boot_id);
    if (recorded.pid != actual.pid)
        return fmt::format("pid {} is not the recorded pid {}", actual.pid, recorded.pid);
    if (recorded.start_time != actual.start_time)
        return fmt::format("pid {} was reused: it started at tick {}, the recorded child at {}",
                           actual.pid, actual.start_time, recorded.start_time);
    if (recorded.uid != actual.uid)
        return fmt::format("pid {} runs as uid {}, not the recorded uid {}", actual.pid, actual.uid,
                           recorded.uid);
    if (!same_executable(recorded.exe, actual.exe))
        return fmt::format("pid {} runs {}, not the recorded {}", actual.pid, actual.exe,
                           recorded.exe);
    return {};
}

bool process_running(pid_t pid) {
    auto stat = read_file_nofollow(fmt::format("/proc/{}/stat", pid), 4096);
    if (!stat)
        return false;
    auto close = stat->rfind(')');
    return close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] != 'Z' &&
           (*stat)[close + 2] != 'X';
}

bool same_executable(const std::string& path, const std::string& proc_exe) {
    static constexpr std::string_view deleted = " (deleted)";
    std::string_view exe = proc_exe;
    if (exe.size() > deleted.size() && exe.ends_with(deleted))
        exe.remove_suffix(deleted.size());
    return exe == path;
}

Result<UniqueFd> pidfd_open(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0)
        return make_error(errno, fmt::format("pidfd_open({})", pid));
    // pidfds are close-on-exec from the kernel.
    return UniqueFd(fd);
}

Status pidfd_send_signal(int pidfd, int sig) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0)
        return make_error(errno, "pidfd_send_signal");
    return ok_status();
}

bool pidfd_exited(int pidfd) {
    struct pollfd p {
        pidfd, POLLIN, 0
    };
    int n;
    do {
        n = ::poll(&p, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n > 0 && (p.revents & (POLLIN | POLLHUP)) != 0;
}

Result<std::string> read_environ(pid_t pid) {
    return read_file_nofollow(fmt::format("/proc/{}/environ", pid), kMaxEnvironBytes);
}

bool environ_has(pid_t pid, std::string_view entry) {
    auto env = read_environ(pid);
    if (!env)
        return false;
    std::string_view all(*env);
    for (size_t pos = 0; pos < all.size();) {
        size_t end = all.find('\0', pos);
        if (end == std::string_view::npos)
            end = all.size();
        if (all.substr(pos, end - pos) == entry)
            return true;
        pos = end + 1;
    }
    return false;
}

std::vector<pid_t> find_processes_with_env(std::string_view entry) {
    std::vector<std::pair<std::uint64_t, pid_t>> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        pid_t pid = 0;
        auto [p, perr] = std::from_chars(name.data(), name.data() + name.size(), pid);
        if (perr != std::errc() || p != name.data() + name.size() || pid <= 0)
            continue;
        if (!environ_has(pid, entry))
            continue;
        if (auto start = read_start_time(pid))
            found.emplace_back(*start, pid);
    }
    std::sort(found.begin(), found.end());
    std::vector<pid_t> out;
    for (const auto& [start, pid] : found)
        out.push_back(pid);
    return out;
}

} // namespace vigil
