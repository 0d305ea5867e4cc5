// Where vigild's control socket is: one helper shared by vigild and vigilctl, so both agree.
#pragma once

#include "vigil/result.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace vigil {

// The socket of a vigild run with the default state_dir (DaemonConfig's
// "${state_dir}/vigild.sock" expanded with "/run/vigil").
inline constexpr std::string_view kDefaultControlSocket = "/run/vigil/vigild.sock";
// The environment variable vigilctl reads when --socket is not given.
inline constexpr std::string_view kControlSocketEnv = "VIGIL_SOCKET";

std::string default_control_socket();

// vigilctl's choice: `flag` (--socket) if given, else $VIGIL_SOCKET if set and not empty,
// else default_control_socket().
std::string resolve_control_socket(const std::optional<std::string>& flag);

// The longest path a unix socket can have: sun_path holds 108 bytes including the NUL.
std::size_t max_socket_path_length();

// Whether `path` can name a unix socket: not empty, no NUL byte, short enough for sun_path.
// The error says which limit was hit and what to do.
Status check_socket_path(std::string_view path);

// The gRPC target for a socket path: "unix:PATH" (relative paths stay relative).
std::string grpc_target(std::string_view path);

} // namespace vigil
