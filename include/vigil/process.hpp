// Facts about processes read from /proc, and pidfds.
//
// vigil uses pidfds (Linux 5.3+) because a pid alone can be reused the moment the process
// it named is reaped; a pidfd keeps naming the same process, so a signal sent through it
// can never hit a stranger. glibc 2.36 has no wrappers for all of these, hence the raw
// syscalls here.
#pragma once

#include "vigil/limits.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace vigil {

// What proves that a pid still names the process vigild started: pid + start time (in
// clock ticks since boot, /proc/PID/stat field 22) + boot id; the executable path is
// checked too, so a record never leads vigild to adopt an unrelated program.
struct ProcessIdentity {
    pid_t pid = 0;
    std::uint64_t start_time = 0;
    std::string boot_id;
    std::string exe;
    uid_t uid = 0; // the real uid ([child] user): a child must still run as it was started

    bool operator==(const ProcessIdentity&) const = default;
};

// /proc/sys/kernel/random/boot_id, without the newline.
Result<std::string> read_boot_id();
// Field 22 of /proc/PID/stat (the comm field may contain spaces and parentheses).
Result<std::uint64_t> read_start_time(pid_t pid);
// readlink /proc/PID/exe.
Result<std::string> read_exe(pid_t pid);
// The real uid, from the Uid: line of /proc/PID/status.
Result<uid_t> read_uid(pid_t pid);
// /proc/PID/limits: soft and hard of each resource, indexed by RLIMIT_* (readable for
// any process, where prlimit(2) would need CAP_SYS_RESOURCE).
Result<std::vector<RLimitValue>> read_limits(pid_t pid);
// readlink /proc/PID/cwd.
Result<std::string> read_cwd(pid_t pid);
// /proc/PID/cmdline: the argv the process runs with.
Result<std::vector<std::string>> read_cmdline(pid_t pid);
Result<ProcessIdentity> read_identity(pid_t pid);
// The wall-clock time a process started: boot time (btime of /proc/stat) plus its start
// time in clock ticks.
std::optional<std::chrono::system_clock::time_point> process_start_wall_time(std::uint64_t ticks);

// Why `actual` is not the process `recorded` describes, or "" when it is. An executable
// replaced on disk since (shown by the kernel as "PATH (deleted)") still matches.
std::string identity_mismatch(const ProcessIdentity& recorded, const ProcessIdentity& actual);

// True when pid names a process that has not exited (a zombie has).
bool process_running(pid_t pid);

// True when /proc/PID/exe's `proc_exe` names `path` (an executable replaced on disk
// since shows as "PATH (deleted)" and still counts).
bool same_executable(const std::string& path, const std::string& proc_exe);

Result<UniqueFd> pidfd_open(pid_t pid);
// Sends `sig` through the pidfd. ESRCH means the process has exited (maybe not reaped).
Status pidfd_send_signal(int pidfd, int sig);
// True when the process behind the pidfd has exited (the pidfd polls readable).
bool pidfd_exited(int pidfd);

// /proc/PID/environ: NAME=VALUE strings, each ended by a NUL.
Result<std::string> read_environ(pid_t pid);
// True when /proc/PID/environ holds `entry` (NAME=VALUE) as one whole string.
bool environ_has(pid_t pid, std::string_view entry);
// The live processes whose environment holds `entry`, oldest first (by start time). A
// snapshot of /proc: the caller proves each pid before it trusts it.
std::vector<pid_t> find_processes_with_env(std::string_view entry);

} // namespace vigil
