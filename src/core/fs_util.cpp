#include "vigil/fs_util.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vigil {
namespace {

Status write_all(int fd, const std::string& content, const std::string& what) {
    const char* p = content.data();
    size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(errno, "failed to write " + what);
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    return ok_status();
}

} // namespace

namespace {

// Parents may be symlinks (/var/run -> /run); only the directory vigild owns may not.
Status ensure_parent_dirs(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos || slash == 0)
        return ok_status();
    const std::string parent = path.substr(0, slash);
    struct stat st;
    if (::stat(parent.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return ok_status();
        return make_error(ENOTDIR, fmt::format("{} exists and is not a directory", parent));
    }
    if (errno != ENOENT)
        return make_error(errno, "failed to stat " + parent);
    if (auto st2 = ensure_parent_dirs(parent); !st2)
        return st2;
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
        return make_error(errno, "failed to create directory " + parent);
    return ok_status();
}

} // namespace

Status ensure_dir(const std::string& path, mode_t mode) {
    if (path.empty())
        return make_error("empty directory path");
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return make_error(ELOOP, fmt::format("{} is a symlink; vigild keeps its files only "
                                                 "in a real directory",
                                                 path));
        if (!S_ISDIR(st.st_mode))
            return make_error(ENOTDIR, fmt::format("{} exists and is not a directory", path));
        // An existing directory keeps its mode: it may be the operator's (--root-dir
        // /var/lib); the caller checks whether it can be trusted.
        return ok_status();
    }
    if (errno != ENOENT)
        return make_error(errno, "failed to stat " + path);
    if (auto parent = ensure_parent_dirs(path); !parent)
        return parent;
    // mkdir applies the umask, so the mode is set afterwards; through a descriptor of the
    // directory itself (O_NOFOLLOW), never by path, so nothing swapped in between (a
    // symlink) gets the mode instead.
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        return make_error(errno, "failed to create directory " + path);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open directory " + path);
    if (::fchmod(fd.get(), mode) != 0)
        return make_error(errno, "failed to set the mode of " + path);
    return ok_status();
}

Status check_private_dir(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open directory " + path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
        return make_error(errno, "failed to stat " + path);
    if (st.st_uid != ::geteuid())
        return make_error(fmt::format("{} is owned by uid {}, not by vigild's uid {}: another "
                                      "user could forge vigild's records there (chown {} {}, or "
                                      "pass another --state-dir)",
                                      path, st.st_uid, ::geteuid(), ::geteuid(), path));
    if ((st.st_mode & 022) != 0)
        return make_error(fmt::format("{} has mode {:04o}: group or others can write vigild's "
                                      "records there (chmod 0700 {})",
                                      path, st.st_mode & 07777, path));
    return ok_status();
}

Status atomic_write_file(const std::string& dir, const std::string& name,
                         const std::string& content, mode_t mode, Durability durability) {
    const bool sync = durability == Durability::machine_crash;
    UniqueFd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd.valid())
        return make_error(errno, "failed to open directory " + dir);
    const std::string target = dir + "/" + name;
    const std::string tmp = fmt::format(".{}.tmp.{}", name, ::getpid());
    ::unlinkat(dirfd.get(), tmp.c_str(), 0); // a leftover of a crashed writer
    UniqueFd fd(::openat(dirfd.get(), tmp.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd.valid())
        return make_error(errno, fmt::format("failed to create {}/{}", dir, tmp));
    auto cleanup = [&] { ::unlinkat(dirfd.get(), tmp.c_str(), 0); };
    // The umask may have narrowed the mode; the file must have exactly `mode`.
    if (::fchmod(fd.get(), mode) != 0) {
        cleanup();
        return make_error(errno, "failed to set the mode of " + target);
    }
    if (auto st = write_all(fd.get(), content, target); !st) {
        cleanup();
        return st;
    }
    if (sync && ::fsync(fd.get()) != 0) {
        cleanup();
        return make_error(errno, "failed to fsync " + target);
    }
    fd.reset();
    if (::renameat(dirfd.get(), tmp.c_str(), dirfd.get(), name.c_str()) != 0) {
        int e = errno;
        cleanup();
        return make_error(e, "failed to rename into " + target);
    }
    if (sync && ::fsync(dirfd.get()) != 0)
        return make_error(errno, "failed to fsync directory " + dir);
    return ok_status();
}

namespace {

Result<std::string> read_bounded(int fd, const std::string& path, size_t max_bytes) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(errno, "failed to read " + path);
        }
        if (n == 0)
            break;
        if (out.size() + static_cast<size_t>(n) > max_bytes)
            return make_error(EFBIG, fmt::format("{} is larger than {} bytes", path, max_bytes));
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

} // namespace

Result<std::string> read_file_nofollow(const std::string& path, size_t max_bytes) {
    // O_NONBLOCK: a FIFO put where a file is expected must not block the open.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open " + path);
    return read_bounded(fd.get(), path, max_bytes);
}

Result<std::string> read_trusted_file(const std::string& path, size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid())
        return make_error(errno, "failed to open " + path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
        return make_error(errno, "failed to stat " + path);
    if (!S_ISREG(st.st_mode))
        return make_error(EPERM, fmt::format("{} is not a regular file", path));
    if (st.st_uid != ::geteuid())
        return make_error(EPERM, fmt::format("{} is owned by uid {}, not by vigild's uid {}", path,
                                             st.st_uid, ::geteuid()));
    if ((st.st_mode & 022) != 0)
        return make_error(EPERM, fmt::format("{} has mode {:04o}: group or others can write it",
                                             path, st.st_mode & 07777));
    if (st.st_nlink != 1)
        return make_error(EPERM, fmt::format("{} has {} hard links: it may be another file's "
                                             "(another instance's record)",
                                             path, st.st_nlink));
    if (static_cast<size_t>(st.st_size) > max_bytes)
        return make_error(EFBIG, fmt::format("{} is larger than {} bytes", path, max_bytes));
    return read_bounded(fd.get(), path, max_bytes);
}

std::string canonical_path(const std::string& path) {
    char buf[PATH_MAX];
    if (::realpath(path.c_str(), buf) == nullptr)
        return path;
    return buf;
}

Status remove_file(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return make_error(errno, "failed to remove " + path);
    return ok_status();
}

StateDirLock::Attempt StateDirLock::acquire(const std::string& state_dir) {
    const std::string path = state_dir + "/vigild.lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid())
        return {Outcome::failed, make_error(errno, "failed to open lock file " + path).message()};
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return {Outcome::failed, make_error(errno, "failed to lock " + path).message()};
        std::string holder;
        char buf[32] = {};
        ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
        if (n > 0) {
            holder = std::string(buf, static_cast<size_t>(n));
            while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
                holder.pop_back();
        }
        pid_t holder_pid = 0;
        if (auto [p, ec] =
                std::from_chars(holder.data(), holder.data() + holder.size(), holder_pid);
            ec != std::errc() || p != holder.data() + holder.size() || holder_pid <= 0)
            holder_pid = 0;
        // The content is printed only as the decimal pid vigild writes there.
        return {Outcome::held_by_other,
                fmt::format("another vigild{} holds {}: one vigild per state dir (stop it, or "
                            "pass another --state-dir)",
                            holder_pid > 0   ? fmt::format(" (pid {})", holder_pid)
                            : holder.empty() ? ""
                                             : " (its lock file does not hold a decimal pid)",
                            path),
                holder_pid};
    }
    std::string pid = fmt::format("{}\n", ::getpid());
    if (::ftruncate(fd.get(), 0) != 0 ||
        ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        return {Outcome::failed, make_error(errno, "failed to write " + path).message()};
    fd_ = std::move(fd);
    return {Outcome::acquired, {}};
}

} // namespace vigil
