#include "vigil/operator_hold.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"
#include "vigil/record_text.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <charconv>
#include <optional>

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
    auto kv = parse_record_lines(text, {"since", "until", "reason"}, {"reason"});
    if (!kv)
        return kv.error();
    auto& m = *kv;
    // Milliseconds since the epoch, within what system_clock (nanoseconds) can hold.
    auto ms = [](const std::string& v) -> std::optional<long long> {
        long long out = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        if (ec != std::errc() || p != v.data() + v.size() || out < 0 || out > kMaxTimeMs)
            return std::nullopt;
        return out;
    };
    OperatorHold h;
    auto since = ms(m["since"]);
    if (!since)
        return make_error("bad since");
    h.since = from_ms(*since);
    if (m["until"] != "none") {
        auto until = ms(m["until"]);
        if (!until)
            return make_error("bad until");
        h.until = from_ms(*until);
    }
    if (m["reason"].size() > kMaxHoldReasonBytes)
        return make_error("reason too long");
    h.reason = m["reason"];
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
