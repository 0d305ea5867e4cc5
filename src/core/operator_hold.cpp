#include "vigil/operator_hold.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <charconv>

namespace vigil {
namespace {

constexpr size_t kMaxHoldBytes = 4096;
// 9e12 ms is the year 2255: below the 2262 limit of a nanosecond system_clock.
constexpr long long kMaxTimeMs = 9'000'000'000'000LL;

long long to_ms(OperatorHold::Time t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

OperatorHold::Time from_ms(long long ms) {
    return OperatorHold::Time(std::chrono::milliseconds(ms));
}

std::string utc(OperatorHold::Time t) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}",
                       std::chrono::time_point_cast<std::chrono::seconds>(t));
}

} // namespace

std::string OperatorHold::describe() const {
    std::string out = "held by the operator since " + utc(since);
    if (!reason.empty())
        out += " (" + reason + ")";
    if (until)
        out += ", until " + utc(*until);
    return out;
}

std::string format_hold(const OperatorHold& h) {
    return fmt::format("since={}\nuntil={}\nreason={}\n", to_ms(h.since),
                       h.until ? std::to_string(to_ms(*h.until)) : std::string("none"), h.reason);
}

Result<OperatorHold> parse_hold(const std::string& text) {
    OperatorHold h;
    bool since = false, until = false, reason = false;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos)
            nl = text.size();
        const std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.empty())
            continue;
        auto eq = line.find('=');
        if (eq == std::string::npos)
            return make_error("expected key=value");
        const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
        // Milliseconds since the epoch, within what system_clock (nanoseconds) can hold.
        auto number = [&](long long& out) {
            auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
            return ec == std::errc() && p == value.data() + value.size() && !value.empty() &&
                   out >= 0 && out <= kMaxTimeMs;
        };
        long long ms = 0;
        if (key == "since" && !since) {
            if (!number(ms))
                return make_error("bad since");
            h.since = from_ms(ms);
            since = true;
        } else if (key == "until" && !until) {
            if (value != "none") {
                if (!number(ms))
                    return make_error("bad until");
                h.until = from_ms(ms);
            }
            until = true;
        } else if (key == "reason" && !reason) {
            if (value.size() > kMaxHoldReasonBytes)
                return make_error("reason too long");
            h.reason = value;
            reason = true;
        } else {
            return make_error("unknown or repeated key '" + key.substr(0, 40) + "'");
        }
    }
    if (!since || !until || !reason)
        return make_error("incomplete hold (needs since, until and reason)");
    return h;
}

Status write_hold(const std::string& state_dir, const OperatorHold& h) {
    return atomic_write_file(state_dir, kHoldName, format_hold(h), 0600, Durability::process_crash);
}

void remove_hold(const std::string& state_dir) {
    (void)remove_file(state_dir + "/" + kHoldName);
}

std::optional<OperatorHold> read_hold(const std::string& state_dir) {
    const std::string path = state_dir + "/" + kHoldName;
    auto text = read_trusted_file(path, kMaxHoldBytes);
    if (!text) {
        if (text.error().code != std::errc::no_such_file_or_directory)
            log::warn("ignoring the operator's hold: {}", text.error().message());
        return std::nullopt;
    }
    auto h = parse_hold(*text);
    if (!h) {
        log::warn("ignoring the operator's hold {}: {}", path, h.error().message());
        return std::nullopt;
    }
    return *h;
}

} // namespace vigil
