// Files and directories as vigild writes them: atomically, never through a symlink.
#pragma once

#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <string>
#include <sys/types.h>

namespace vigil {

// Creates `path` (and missing parents, mode 0755) with `mode` for the last component (set
// through a descriptor opened O_NOFOLLOW, never by path). An existing directory is left as
// it is (it may be the operator's); parents may be symlinks, `path` itself may not, and a
// non-directory is an error.
Status ensure_dir(const std::string& path, mode_t mode);

// DESIGN's trust rule for the state dir: a real directory (not a symlink) owned by vigild's
// euid and not writable by group or others. The error says what to fix.
Status check_private_dir(const std::string& path);

// How far a write must survive. `process_crash`: a crash of vigild (any signal, SIGKILL
// included) never leaves a half-written file, but a machine crash may lose the write: for
// the child's records, which mean nothing after a reboot (they carry the boot id) and
// whose fsyncs would block the loop for milliseconds after every spawn. `machine_crash`:
// fsync of the file and the directory as well.
enum class Durability { process_crash, machine_crash };

// Writes `content` to `dir/name`: a temp file in `dir` (O_EXCL|O_NOFOLLOW, `mode`),
// (fsync,) rename over the target, (fsync of the directory). Readers see the old or the
// new file, never a half-written one. A symlink at the target is replaced, never followed.
Status atomic_write_file(const std::string& dir, const std::string& name,
                         const std::string& content, mode_t mode,
                         Durability durability = Durability::machine_crash);

// Larger files are refused (EFBIG) rather than read without bound.
inline constexpr size_t kMaxReadBytes = 1 << 20;

// Reads a whole file without following a symlink in its last component, without blocking
// in open() (O_NONBLOCK: a FIFO), and at most `max_bytes` (else EFBIG: a device such as
// /dev/zero never ends). For /proc files and files vigild checks itself.
Result<std::string> read_file_nofollow(const std::string& path, size_t max_bytes = kMaxReadBytes);

// Reads a file only if vigild could have written it itself: a regular file (not a symlink,
// FIFO or device), owned by vigild's euid, not writable by group or others, with one link
// (a hard link could make another instance's record look like ours), at most `max_bytes`.
// Anything else is an error (EPERM or EFBIG) whose message says what is wrong; ENOENT when
// it does not exist.
Result<std::string> read_trusted_file(const std::string& path, size_t max_bytes);

// realpath(3) of `path`, or `path` itself when it cannot be resolved.
std::string canonical_path(const std::string& path);

// unlink(2); a missing file is not an error.
Status remove_file(const std::string& path);

// The exclusive lock on state_dir/vigild.lock, held for vigild's whole life.
class StateDirLock {
public:
    enum class Outcome { acquired, held_by_other, failed };
    struct Attempt {
        Outcome outcome;
        std::string message; // for held_by_other / failed: what to tell the operator
        pid_t holder = 0;    // held_by_other: the pid the lock file names (0 = none)
    };

    // Takes the lock without waiting and records our pid in the file.
    Attempt acquire(const std::string& state_dir);
    bool held() const { return fd_.valid(); }

private:
    UniqueFd fd_;
};

} // namespace vigil
