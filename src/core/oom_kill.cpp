#include "vigil/oom_kill.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <unistd.h>

namespace vigil {
namespace {

// A kmsg record is at most this long (the kernel's own limit is 1 KiB of text plus
// the prefix and the dictionary).
constexpr std::size_t kRecordMax = 8192;
// Records read per take(): the ring holds at most a few thousand; this bounds one call
// even when the kernel logs faster than we read.
constexpr int kMaxRecordsPerDrain = 20000;

// The number right after `key` in `s` ("anon-rss:" -> 16128), if there is one.
template <class T> std::optional<T> number_after(std::string_view s, std::string_view key) {
    const auto at = s.find(key);
    if (at == std::string_view::npos)
        return std::nullopt;
    const char* begin = s.data() + at + key.size();
    T value{};
    auto [p, ec] = std::from_chars(begin, s.data() + s.size(), value);
    if (ec != std::errc() || p == begin)
        return std::nullopt;
    return value;
}

} // namespace

std::optional<OomKill> parse_oom_kill_record(std::string_view record) {
    // The message: after the "PRI,SEQ,USEC,FLAGS;" prefix of a kmsg record, up to the
    // end of its first line.
    if (const auto semi = record.find(';');
        semi != std::string_view::npos && record.find_first_not_of("0123456789,-c+") == semi)
        record.remove_prefix(semi + 1);
    record = record.substr(0, record.find('\n'));
    // "Out of memory: Killed process 123 (name) total-vm:..., anon-rss:...,
    // file-rss:..., shmem-rss:..., UID:0 pgtables:...kB oom_score_adj:0", or "Memory
    // cgroup out of memory: Killed process ..." for a memory cgroup's limit.
    constexpr std::string_view kKilled = "Killed process ";
    const auto at = record.find(kKilled);
    if (at == std::string_view::npos ||
        record.find("ut of memory: Killed process") == std::string_view::npos)
        return std::nullopt;
    OomKill k;
    k.memcg = record.find("Memory cgroup out of memory") != std::string_view::npos;
    std::string_view rest = record.substr(at + kKilled.size());
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), k.pid);
    if (ec != std::errc() || k.pid <= 0)
        return std::nullopt;
    rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
    // The name is in parentheses and may itself contain ") " (it is the task's comm):
    // it ends at the last ") " before "total-vm:".
    const auto vm = rest.find(" total-vm:");
    if (rest.size() < 2 || rest.substr(0, 2) != " (" || vm == std::string_view::npos || vm < 3 ||
        rest[vm - 1] != ')')
        return std::nullopt;
    k.comm = std::string(rest.substr(2, vm - 3));
    rest.remove_prefix(vm);
    const auto anon = number_after<std::uint64_t>(rest, "anon-rss:");
    const auto total = number_after<std::uint64_t>(rest, "total-vm:");
    const auto adj = number_after<int>(rest, "oom_score_adj:");
    if (!anon || !total || !adj)
        return std::nullopt;
    k.anon_rss_kb = *anon;
    k.total_vm_kb = *total;
    k.oom_score_adj = *adj;
    return k;
}

std::string format_kib(std::uint64_t kib) {
    if (kib >= 1024ull * 1024)
        return fmt::format("{:.1f} GiB", static_cast<double>(kib) / (1024.0 * 1024.0));
    if (kib >= 1024)
        return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024.0);
    return fmt::format("{} KiB", kib);
}

Status KmsgOomWatcher::open(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, fmt::format("cannot read the kernel log ({})", path));
    // Only what the kernel logs from now on: an old kill of a pid that was since reused
    // must not be taken for the child's.
    if (::lseek(fd.get(), 0, SEEK_END) < 0 && errno != ESPIPE)
        return make_error(errno, fmt::format("cannot seek to the end of {}", path));
    fd_ = std::move(fd);
    return ok_status();
}

void KmsgOomWatcher::drain() {
    if (!fd_.valid())
        return;
    std::string buf(kRecordMax, '\0');
    for (int i = 0; i < kMaxRecordsPerDrain; ++i) {
        const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR || errno == EPIPE) // EPIPE: records were overwritten; go on
                continue;
            return; // EAGAIN: nothing more (or an error: nothing to read either)
        }
        if (n == 0)
            return; // a regular file (tests) at its end
        if (auto kill =
                parse_oom_kill_record(std::string_view(buf.data(), static_cast<std::size_t>(n)))) {
            kills_.push_back(std::move(*kill));
            while (kills_.size() > kKeep)
                kills_.pop_front();
        }
    }
}

std::optional<OomKill> KmsgOomWatcher::take(pid_t pid) {
    drain();
    for (auto it = kills_.rbegin(); it != kills_.rend(); ++it)
        if (it->pid == pid) {
            OomKill k = std::move(*it);
            kills_.erase(std::next(it).base());
            return k;
        }
    return std::nullopt;
}

} // namespace vigil
