// Environment files ([child] env_files), in systemd's EnvironmentFile= syntax:
// - one KEY=VALUE per line; empty lines and lines starting with '#' or ';' are skipped;
// - whitespace around KEY and before VALUE is ignored; KEY is [A-Za-z_][A-Za-z0-9_]*;
// - VALUE may mix unquoted parts (a backslash escapes the next character, trailing
//   whitespace is dropped), '...' (taken literally, may span lines) and "..." (\" \\ \$ \`
//   are escapes, may span lines); a backslash at the end of a line continues the value.
#pragma once

#include "vigil/result.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vigil {

using EnvEntries = std::vector<std::pair<std::string, std::string>>;

// Files larger than this are refused.
inline constexpr size_t kMaxEnvFileBytes = 1 << 20;

// Errors read "PATH:LINE: what is wrong".
Result<EnvEntries> parse_env_file(std::string_view text, std::string_view path);

// Reads one entry of env_files: "PATH" (must exist) or "-PATH" (optional: a missing file
// gives no entries). The file is read without following a symlink in its last component,
// without blocking on a FIFO and at most kMaxEnvFileBytes.
Result<EnvEntries> read_env_file(const std::string& spec);

} // namespace vigil
