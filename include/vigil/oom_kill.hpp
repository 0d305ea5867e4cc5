// Telling a kernel OOM kill from any other SIGKILL, without cgroups: the kernel's own
// record of the kill in /dev/kmsg ("Killed process PID (name) total-vm:...kB,
// anon-rss:...kB, ... oom_score_adj:N") names the pid.
#pragma once

#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace vigil {

struct OomKill {
    pid_t pid = 0;
    std::string comm;              // the task name the kernel printed
    std::uint64_t anon_rss_kb = 0; // resident anonymous memory at the kill
    std::uint64_t total_vm_kb = 0;
    int oom_score_adj = 0;
    bool memcg = false; // a memory cgroup's limit, not the whole machine, was hit
};

// One /dev/kmsg record ("PRI,SEQ,USEC,FLAGS;MESSAGE\n" then " KEY=VALUE" lines), or a bare
// message: the kill it reports, if it reports one.
std::optional<OomKill> parse_oom_kill_record(std::string_view record);

// "1.2 GiB", "512 MiB", "900 KiB".
std::string format_kib(std::uint64_t kib);

// Reads the kernel log from the moment it is opened, never blocking: records are read
// only when asked (a SIGKILL death), until the log has nothing more, and the last kills
// are kept. Without the right to read /dev/kmsg (kernel.dmesg_restrict and no
// CAP_SYSLOG), `open` fails and every SIGKILL is reported as a plain SIGKILL.
class KmsgOomWatcher {
public:
    static constexpr std::size_t kKeep = 16; // kills remembered

    // `path` is /dev/kmsg but for tests.
    Status open(const std::string& path = "/dev/kmsg");
    bool is_open() const { return fd_.valid(); }
    // Tests: records come from `fd` (a SOCK_SEQPACKET socket keeps them apart, as kmsg).
    void adopt(UniqueFd fd) { fd_ = std::move(fd); }
    // Reads what the kernel logged since the last call, then hands over the kill of `pid`
    // if one is among the kills kept (it is forgotten then).
    std::optional<OomKill> take(pid_t pid);

private:
    void drain();

    UniqueFd fd_;
    std::deque<OomKill> kills_;
};

} // namespace vigil
