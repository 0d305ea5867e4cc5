// oom_score_adj: reading, writing, and the words an operator needs when it fails.
#pragma once

#include "vigil/result.hpp"

#include <sys/types.h>

namespace vigil {

inline constexpr int kOomScoreMin = -1000;
inline constexpr int kOomScoreMax = 1000;

// /proc/PID/oom_score_adj (pid 0 = vigild itself). With `pidfd` (the process's pidfd), the
// file is opened first and the pidfd checked alive afterwards: a pid reused since the
// process exited is never read or written (ESRCH instead).
Result<int> read_oom_score(pid_t pid, int pidfd = -1);
// Writes the score. Lowering a score below what the process had needs CAP_SYS_RESOURCE;
// the error then says so.
Status write_oom_score(pid_t pid, int score, int pidfd = -1);
// The text for a failed write: names the capability for EPERM/EACCES.
std::string oom_failure_hint(int err);

} // namespace vigil
