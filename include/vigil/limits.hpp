// Resource limits for the child ([child.limits]): names, values, and how they are written.
//
// A value is an integer, "infinity", or "SOFT:HARD" (each side an integer or "infinity").
// Size limits (as, core, data, fsize, memlock, msgqueue, rss, stack) also take the
// suffixes K, M, G, T (powers of 1024), as systemd's LimitX= does. One number sets soft and
// hard alike.
#pragma once

#include "vigil/result.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <vector>

namespace vigil {

struct RLimitValue {
    rlim_t soft = RLIM_INFINITY;
    rlim_t hard = RLIM_INFINITY;

    bool operator==(const RLimitValue&) const = default;
};

struct RLimitSetting {
    int resource; // RLIMIT_*
    RLimitValue value;

    bool operator==(const RLimitSetting&) const = default;
};

// Every limit name, in the order of DESIGN.md ("as", "core", "cpu", ... "stack").
const std::vector<std::string_view>& rlimit_names();
// "nofile" -> RLIMIT_NOFILE; nullopt for an unknown name.
std::optional<int> rlimit_resource(std::string_view name);
// RLIMIT_NOFILE -> "nofile"; RLIMIT_NOFILE -> "RLIMIT_NOFILE" with `constant`.
std::string rlimit_name(int resource, bool constant = false);

// Parses a value given as text; the error says what was expected.
Result<RLimitValue> parse_rlimit(int resource, std::string_view text);
// An integer given as a TOML integer.
Result<RLimitValue> rlimit_from_integer(long long value);
// "1024", "infinity", "1024:4096" (the form the parser takes).
std::string format_rlimit(const RLimitValue& v);

} // namespace vigil
