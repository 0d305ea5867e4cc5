// Starting the child: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + execve.
//
// vigild has gRPC threads, so fork() followed by arbitrary code is unsafe (a lock held by
// another thread at fork time stays held forever in the child). The child side therefore
// runs only raw system calls on its own stack, the way posix_spawn does it internally;
// posix_spawn itself cannot setsid+write oom_score_adj+close every fd in one step, which
// is why this is hand-written. With CLONE_VFORK the parent resumes only once the child has
// exec'd or died, so the close-on-exec error pipe can be read at once without blocking.
#pragma once

#include "vigil/limits.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

struct SpawnSpec {
    std::string binary;            // a path, or a name looked up on PATH
    std::vector<std::string> argv; // argv[0] included
    std::vector<std::string> env;  // NAME=VALUE, complete
    bool new_session = true;       // setsid() in the child
    std::optional<int> oom_score;  // written to /proc/self/oom_score_adj before exec
    int stdout_fd = -1;            // -1: inherit vigild's
    int stderr_fd = -1;
    // Applied in the child before exec, in this order (DESIGN.md): OOM score (above),
    // rlimits, supplementary groups, gid, uid, no_new_privs, cwd, umask.
    std::vector<RLimitSetting> limits;
    std::optional<std::vector<gid_t>> groups;
    std::optional<gid_t> gid;
    std::optional<uid_t> uid;
    bool no_new_privileges = false;
    std::string working_directory; // "" = keep vigild's
    std::optional<mode_t> umask;
};

struct SpawnedChild {
    pid_t pid = 0;
    UniqueFd pidfd;
    std::string exe;   // the path that was exec'd
    int oom_errno = 0; // the child could not write its oom_score_adj (e.g. EPERM)
};

// Finds `name` on PATH (or takes it as a path if it has a '/'). nullopt if not found.
std::optional<std::string> find_executable(const std::string& name);
// find_executable, then realpath: the path /proc/PID/exe shows once it runs.
std::optional<std::string> resolve_binary(const std::string& name);

// Spawns the child. When a step before exec fails (or exec itself), the child has already
// been reaped and the error names the step and the errno: "failed to exec PATH: ...",
// "setrlimit(RLIMIT_NOFILE, 1024:2000000): Operation not permitted", "setuid(65534): ...",
// "chdir(/srv): No such file or directory". Must run on the loop thread (it blocks signals of
// the calling thread for the few microseconds the child shares its memory).
Result<SpawnedChild> spawn_child(const SpawnSpec& spec);

} // namespace vigil
