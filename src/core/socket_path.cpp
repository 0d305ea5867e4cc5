#include "vigil/socket_path.hpp"

#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <sys/un.h>

namespace vigil {

std::string default_control_socket() {
    return std::string(kDefaultControlSocket);
}

std::string resolve_control_socket(const std::optional<std::string>& flag) {
    if (flag)
        return *flag;
    const std::string env_name(kControlSocketEnv);
    if (const char* env = std::getenv(env_name.c_str()); env != nullptr && *env != '\0')
        return env;
    return default_control_socket();
}

std::size_t max_socket_path_length() {
    return sizeof(sockaddr_un{}.sun_path) - 1;
}

Status check_socket_path(std::string_view path) {
    if (path.empty())
        return make_error(EINVAL, "control socket path is empty");
    if (path.find('\0') != std::string_view::npos)
        return make_error(EINVAL, "control socket path contains a NUL byte");
    if (path.size() > max_socket_path_length())
        return make_error(ENAMETOOLONG,
                          fmt::format("control socket path {} is {} bytes long, more than the {} "
                                      "a unix socket allows (choose a shorter state_dir or "
                                      "control_socket)",
                                      path, path.size(), max_socket_path_length()));
    return ok_status();
}

std::string grpc_target(std::string_view path) {
    return fmt::format("unix:{}", path);
}

} // namespace vigil
