#include "vigil/limits.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <limits>

namespace vigil {
namespace {

struct Entry {
    std::string_view name;
    int resource;
    const char* constant;
    bool size; // takes K/M/G/T
};

constexpr std::array kLimits{
    Entry{"as", RLIMIT_AS, "RLIMIT_AS", true},
    Entry{"core", RLIMIT_CORE, "RLIMIT_CORE", true},
    Entry{"cpu", RLIMIT_CPU, "RLIMIT_CPU", false},
    Entry{"data", RLIMIT_DATA, "RLIMIT_DATA", true},
    Entry{"fsize", RLIMIT_FSIZE, "RLIMIT_FSIZE", true},
    Entry{"locks", RLIMIT_LOCKS, "RLIMIT_LOCKS", false},
    Entry{"memlock", RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", true},
    Entry{"msgqueue", RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE", true},
    Entry{"nice", RLIMIT_NICE, "RLIMIT_NICE", false},
    Entry{"nofile", RLIMIT_NOFILE, "RLIMIT_NOFILE", false},
    Entry{"nproc", RLIMIT_NPROC, "RLIMIT_NPROC", false},
    Entry{"rss", RLIMIT_RSS, "RLIMIT_RSS", true},
    Entry{"rtprio", RLIMIT_RTPRIO, "RLIMIT_RTPRIO", false},
    Entry{"rttime", RLIMIT_RTTIME, "RLIMIT_RTTIME", false},
    Entry{"sigpending", RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING", false},
    Entry{"stack", RLIMIT_STACK, "RLIMIT_STACK", true},
};

const Entry* entry_of(int resource) {
    for (const auto& e : kLimits)
        if (e.resource == resource)
            return &e;
    return nullptr;
}

// One side: an integer (with a size suffix where allowed) or "infinity".
Result<rlim_t> parse_side(const Entry& e, std::string_view s) {
    if (s == "infinity")
        return static_cast<rlim_t>(RLIM_INFINITY);
    unsigned long long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p == s.data())
        return make_error(fmt::format("'{}' is not a number or \"infinity\"", s));
    std::string_view suffix(p, static_cast<size_t>(s.data() + s.size() - p));
    unsigned shift = 0;
    if (!suffix.empty()) {
        if (!e.size)
            return make_error(fmt::format("'{}': {} takes no unit suffix", s, e.name));
        if (suffix == "K")
            shift = 10;
        else if (suffix == "M")
            shift = 20;
        else if (suffix == "G")
            shift = 30;
        else if (suffix == "T")
            shift = 40;
        else
            return make_error(fmt::format("'{}': unknown suffix '{}' (K, M, G or T)", s, suffix));
    }
    if (shift && v > (std::numeric_limits<unsigned long long>::max() >> shift))
        return make_error(fmt::format("'{}' is too large", s));
    v <<= shift;
    if (v >= static_cast<unsigned long long>(RLIM_INFINITY))
        return make_error(fmt::format("'{}' is too large (write \"infinity\")", s));
    return static_cast<rlim_t>(v);
}

std::string side(rlim_t v) {
    return v == RLIM_INFINITY ? std::string("infinity") : std::to_string(v);
}

} // namespace

const std::vector<std::string_view>& rlimit_names() {
    static const std::vector<std::string_view> names = [] {
        std::vector<std::string_view> n;
        for (const auto& e : kLimits)
            n.push_back(e.name);
        return n;
    }();
    return names;
}

std::optional<int> rlimit_resource(std::string_view name) {
    for (const auto& e : kLimits)
        if (e.name == name)
            return e.resource;
    return std::nullopt;
}

std::string rlimit_name(int resource, bool constant) {
    const Entry* e = entry_of(resource);
    if (!e)
        return fmt::format("RLIMIT#{}", resource);
    return constant ? std::string(e->constant) : std::string(e->name);
}

Result<RLimitValue> parse_rlimit(int resource, std::string_view text) {
    const Entry* e = entry_of(resource);
    if (!e)
        return make_error("unknown limit");
    auto colon = text.find(':');
    auto soft = parse_side(*e, text.substr(0, colon));
    if (!soft)
        return soft.error();
    if (colon == std::string_view::npos)
        return RLimitValue{*soft, *soft};
    auto hard = parse_side(*e, text.substr(colon + 1));
    if (!hard)
        return hard.error();
    if (*soft > *hard)
        return make_error(
            fmt::format("soft limit {} is above the hard limit {}", side(*soft), side(*hard)));
    return RLimitValue{*soft, *hard};
}

Result<RLimitValue> rlimit_from_integer(long long value) {
    if (value < 0)
        return make_error(fmt::format("must not be negative, got {}", value));
    return RLimitValue{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
}

std::string format_rlimit(const RLimitValue& v) {
    if (v.soft == v.hard)
        return side(v.soft);
    return side(v.soft) + ":" + side(v.hard);
}

} // namespace vigil
