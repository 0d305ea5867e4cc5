// Conversions between the control backend's types and the control API's messages
// (proto/vigil/v1/supervisor.proto). Pure functions, any thread.
#pragma once

#include "vigil/control_backend.hpp"

#include "vigil/v1/supervisor.pb.h"

#include <optional>
#include <string>
#include <string_view>

namespace vigil {

// `s` with every byte that does not belong to a valid UTF-8 sequence replaced by U+FFFD:
// proto3 strings must be UTF-8, and a child's output or argv need not be.
std::string valid_utf8(std::string_view s);

// RFC 3339 in UTC with milliseconds: "2024-05-01T12:00:00.123Z".
std::string format_rfc3339(SystemTime t);
std::string format_rfc3339(const std::optional<SystemTime>& t); // "" for nullopt
// The inverse (any RFC 3339 offset accepted); nullopt for "" or a malformed string.
std::optional<SystemTime> parse_rfc3339(std::string_view s);

v1::ExitInfo to_proto(const std::optional<ExitStatus>& exit, const std::optional<SystemTime>& at);
v1::StatusReply to_proto(const StatusSnapshot& s);
v1::Event to_proto(const Event& e);
v1::LogLine to_proto(const LogLine& l);

} // namespace vigil
