// Files and directories as vigild writes them: atomically, never through a symlink.
#pragma once

#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <string>
#include <sys/types.h>

namespace vigil {

// Creates `path` (and missing parents, mode 0755) with `mode` for the last component. An
// existing directory is left as it is (it may be the operator's); parents may be
// symlinks, `path` itself may not, and a non-directory is an error.
Status ensure_dir(const std::string& path, mode_t mode);

// Writes `content` to `dir/name`: a temp file in `dir` (O_EXCL|O_NOFOLLOW, `mode`), fsync,
// rename over the target, fsync of the directory. Readers see the old or the new file,
// never a half-written one. A symlink at the target is replaced, never followed.
Status atomic_write_file(const std::string& dir, const std::string& name,
                         const std::string& content, mode_t mode);

// Reads a whole regular file without following a symlink in its last component.
Result<std::string> read_file_nofollow(const std::string& path);

// unlink(2); a missing file is not an error.
Status remove_file(const std::string& path);

// The exclusive lock on state_dir/vigild.lock, held for vigild's whole life.
class StateDirLock {
public:
    enum class Outcome { acquired, held_by_other, failed };
    struct Attempt {
        Outcome outcome;
        std::string message; // for held_by_other / failed: what to tell the operator
    };

    // Takes the lock without waiting and records our pid in the file.
    Attempt acquire(const std::string& state_dir);
    bool held() const { return fd_.valid(); }

private:
    UniqueFd fd_;
};

} // namespace vigil
