// The control socket's listening end, made without gRPC: vigild binds and listens before it
// spawns the child (everything that can fail for a reason the operator must fix), and the
// control module (control_module.hpp) serves the fd it is given after the spawn.
#pragma once

#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

struct ControlServerOptions {
    std::string socket_path;
    unsigned mode = 0660;
    std::string group; // name or number; "" = leave vigild's group
    std::vector<uid_t> allowed_uids;
};

// A bound, listening, non-blocking socket, with the identity of its file (to remove it
// later only if it is still ours).
struct ListeningSocket {
    UniqueFd fd;
    dev_t dev = 0;
    ino_t ino = 0;
    std::optional<gid_t> gid; // the group given to the socket file, if any
};

// Checks the path length, removes a stale socket (the caller holds the state-dir lock, so
// no live vigild owns one in the state dir; one that still accepts connections is never
// removed), binds, applies mode and group, listens. A path that exists and is not a socket
// is an error, never removed. On failure nothing is left behind.
Result<ListeningSocket> listen_control_socket(const ControlServerOptions& opts);

// Removes the socket file at `path` if it is still the one (dev, ino) names; ino 0: none.
void remove_control_socket(const std::string& path, dev_t dev, ino_t ino);

// "group" as a gid: a number, or a name looked up in the group database.
Result<gid_t> resolve_group(const std::string& group);

} // namespace vigil
