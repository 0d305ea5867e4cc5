#include "vigil/control_socket.hpp"

#include "vigil/socket_path.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace vigil {
namespace {

// Connections that wait for vigild's accept (the kernel caps this at somaxconn).
constexpr int kListenBacklog = 64;

// True when something accepts connections on the unix socket at `path`.
bool socket_is_live(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return false;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

} // namespace

Result<gid_t> resolve_group(const std::string& group) {
    gid_t numeric = 0;
    const char* end = group.data() + group.size();
    if (auto [p, ec] = std::from_chars(group.data(), end, numeric); ec == std::errc() && p == end)
        return numeric;
    std::vector<char> buf(16384);
    struct group gr {};
    struct group* found = nullptr;
    int rc = 0;
    while ((rc = ::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < (1u << 20))
        buf.resize(buf.size() * 2);
    if (rc != 0)
        return make_error(rc, fmt::format("failed to look up control_socket_group '{}'", group));
    if (found == nullptr)
        return make_error(fmt::format("control_socket_group '{}' does not exist", group));
    return found->gr_gid;
}

void remove_control_socket(const std::string& path, dev_t dev, ino_t ino) {
    struct stat st {};
    if (ino != 0 && ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
        ::unlink(path.c_str());
}

Result<ListeningSocket> listen_control_socket(const ControlServerOptions& opts) {
    const std::string& path = opts.socket_path;
    if (auto st = check_socket_path(path); !st)
        return st.error();
    std::optional<gid_t> gid;
    if (!opts.group.empty()) {
        auto g = resolve_group(opts.group);
        if (!g)
            return g.error();
        gid = *g;
    }

    // A socket left by a dead vigild: the caller holds the state-dir lock, so a socket in
    // the state dir is stale. One outside it might be another vigild's (two configs naming
    // the same path): a socket that still accepts connections is never removed.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return make_error(EEXIST, fmt::format("control socket path {} exists and is not a "
                                                  "socket (remove it or choose another path)",
                                                  path));
        if (socket_is_live(path))
            return make_error(EADDRINUSE,
                              fmt::format("control socket {} is served by another process "
                                          "(another vigild with the same control_socket?)",
                                          path));
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            return make_error(errno, fmt::format("failed to remove stale control socket {}", path));
    } else if (errno != ENOENT) {
        return make_error(errno, fmt::format("failed to inspect control socket path {}", path));
    }

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return make_error(errno, "failed to create the control socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        return make_error(errno, fmt::format("failed to bind control socket {}", path));
    auto fail = [&](int err, std::string what) -> Error {
        ::unlink(path.c_str());
        return make_error(err, std::move(what));
    };
    // Mode and group are applied between bind() and listen(). Until listen() nobody can
    // connect (connect() gets ECONNREFUSED), so no peer ever reaches the socket under the
    // looser mode bind() created it with. Chosen over the alternatives: umask is
    // process-wide (gRPC threads and the spawned child would see it change), and binding in
    // a private temp dir then renaming lengthens the path that must fit in sun_path.
    if (::chmod(path.c_str(), static_cast<mode_t>(opts.mode & 07777)) != 0)
        return fail(errno,
                    fmt::format("failed to set mode {:04o} on control socket {}", opts.mode, path));
    if (gid && ::lchown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0)
        return fail(errno,
                    fmt::format("failed to give control socket {} to group {}", path, opts.group));
    if (::lstat(path.c_str(), &st) != 0)
        return fail(errno, fmt::format("failed to inspect control socket {}", path));
    if (::listen(fd.get(), kListenBacklog) != 0)
        return fail(errno, fmt::format("failed to listen on control socket {}", path));
    return ListeningSocket{std::move(fd), st.st_dev, st.st_ino, gid};
}

} // namespace vigil
