#include "vigil/control_proto.hpp"

#include <google/protobuf/util/time_util.h>

#include <ctime>
#include <fmt/format.h>

namespace vigil {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD"; // U+FFFD

// The length of the valid UTF-8 sequence at the start of `s`, or 0.
std::size_t utf8_sequence_length(std::string_view s) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
    const unsigned char c = b(0);
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(1) || !cont(2))
            return 0;
        if (c == 0xE0 && b(1) < 0xA0)
            return 0; // overlong
        if (c == 0xED && b(1) >= 0xA0)
            return 0; // surrogate
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3))
            return 0;
        if (c == 0xF0 && b(1) < 0x90)
            return 0; // overlong
        if (c == 0xF4 && b(1) >= 0x90)
            return 0; // above U+10FFFF
        return 4;
    }
    return 0;
}

} // namespace

std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    while (!s.empty()) {
        const std::size_t n = utf8_sequence_length(s);
        if (n == 0) {
            out += kReplacementChar;
            s.remove_prefix(1);
        } else {
            out += s.substr(0, n);
            s.remove_prefix(n);
        }
    }
    return out;
}

std::string format_rfc3339(SystemTime t) {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
    // Floor division, so times before 1970 still get a milliseconds part in 0..999.
    std::int64_t secs = ms / 1000;
    std::int64_t frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        --secs;
    }
    const std::time_t tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

std::string format_rfc3339(const std::optional<SystemTime>& t) {
    return t ? format_rfc3339(*t) : std::string();
}

std::optional<SystemTime> parse_rfc3339(std::string_view s) {
    if (s.empty())
        return std::nullopt;
    google::protobuf::Timestamp ts;
    if (!google::protobuf::util::TimeUtil::FromString(std::string(s), &ts))
        return std::nullopt;
    using namespace std::chrono;
    // SystemTime counts nanoseconds in 64 bits (1677..2262); beyond, the sum overflows.
    if (ts.seconds() < duration_cast<seconds>(SystemTime::duration::min()).count() ||
        ts.seconds() >= duration_cast<seconds>(SystemTime::duration::max()).count())
        return std::nullopt;
    return SystemTime(
        duration_cast<SystemTime::duration>(seconds(ts.seconds()) + nanoseconds(ts.nanos())));
}

v1::ExitInfo to_proto(const std::optional<ExitStatus>& exit, const std::optional<SystemTime>& at) {
    v1::ExitInfo out;
    if (!exit) {
        out.set_kind("none");
        return out;
    }
    switch (exit->kind) {
    case ExitStatus::Kind::exited:
        out.set_kind("exited");
        out.set_code(exit->value);
        break;
    case ExitStatus::Kind::signaled:
        out.set_kind("signaled");
        out.set_signal(exit->value);
        out.set_signal_name(signal_name(exit->value));
        if (exit->oom_kill) {
            out.set_oom_killed(true);
            out.set_oom_anon_rss_bytes(exit->oom_kill->anon_rss_kb * 1024);
            out.set_oom_score_adj(exit->oom_kill->oom_score_adj);
        }
        break;
    case ExitStatus::Kind::unknown:
        out.set_kind("unknown");
        break;
    }
    out.set_description(describe(*exit));
    out.set_at(format_rfc3339(at));
    return out;
}

v1::StatusReply to_proto(const StatusSnapshot& s) {
    v1::StatusReply out;
    out.set_state(valid_utf8(s.state));
    out.set_state_reason(valid_utf8(s.state_reason));
    out.set_state_since(format_rfc3339(s.state_since));
    if (s.next_start_at)
        out.set_next_start_at(format_rfc3339(s.next_start_at));
    auto& hold = *out.mutable_hold();
    hold.set_active(s.held);
    if (s.held_since)
        hold.set_since(format_rfc3339(s.held_since));
    if (s.held_until)
        hold.set_until(format_rfc3339(s.held_until));
    hold.set_reason(valid_utf8(s.hold_reason));
    out.set_rollback(valid_utf8(s.rollback));
    out.set_rolled_back_at(format_rfc3339(s.rolled_back_at));
    out.set_latest_incident(valid_utf8(s.latest_incident));
    out.set_latest_incident_reason(valid_utf8(s.latest_incident_reason));
    out.set_notify_status(valid_utf8(s.notify_status));
    out.set_pid(s.pid);
    out.set_adopted(s.adopted);
    out.set_started_at(format_rfc3339(s.started_at));
    out.set_restart_count(s.restart_count);
    *out.mutable_last_exit() = to_proto(s.last_exit, s.last_exit_at);

    auto& health = *out.mutable_health();
    health.set_enabled(s.health_enabled);
    health.set_consecutive_failures(s.consecutive_health_failures);
    health.set_last_check(format_rfc3339(s.last_health_check));
    health.set_last_result(valid_utf8(s.last_health_result));

    auto& oom = *out.mutable_oom();
    oom.set_configured(to_string(s.oom_configured));
    oom.set_configured_inherit(s.oom_configured.inherit);
    oom.set_configured_value(s.oom_configured.inherit ? 0 : s.oom_configured.value);
    oom.set_actual_known(s.oom_actual.has_value());
    oom.set_actual(s.oom_actual.value_or(0));

    auto& child = *out.mutable_child();
    child.set_binary(valid_utf8(s.child_binary));
    child.set_user(valid_utf8(s.child_user));
    child.set_working_directory(valid_utf8(s.child_working_directory));
    for (const auto& [k, v] : s.child_limits)
        (*child.mutable_limits())[k] = v;
    for (const auto& a : s.child_args)
        child.add_args(valid_utf8(a));
    child.set_output(s.output_mode);

    auto& daemon = *out.mutable_vigild();
    daemon.set_version(s.vigild_version);
    daemon.set_pid(s.vigild_pid);

    auto& lag = *out.mutable_loop_lag();
    lag.set_samples(s.loop_lag.samples);
    lag.set_window(s.loop_lag.window);
    lag.set_p50_us(s.loop_lag.p50_us);
    lag.set_p99_us(s.loop_lag.p99_us);
    lag.set_max_us(s.loop_lag.max_us);
    lag.set_max_ever_us(s.loop_lag.max_ever_us);
    return out;
}

v1::Event to_proto(const Event& e) {
    v1::Event out;
    out.set_seq(e.seq);
    out.set_time(format_rfc3339(e.time));
    out.set_kind(std::string(to_string(e.kind)));
    out.set_message(valid_utf8(e.message));
    out.set_from_state(e.from_state);
    out.set_to_state(e.to_state);
    out.set_pid(e.pid);
    *out.mutable_exit() =
        to_proto(e.exit, e.exit ? std::optional<SystemTime>(e.time) : std::nullopt);
    out.set_health_result(valid_utf8(e.health_result));
    out.set_oom_score_known(e.oom_score.has_value());
    out.set_oom_score(e.oom_score.value_or(0));
    return out;
}

v1::LogLine to_proto(const LogLine& l) {
    v1::LogLine out;
    out.set_seq(l.seq);
    out.set_time(format_rfc3339(l.time));
    out.set_pid(l.pid);
    out.set_stream(l.stream);
    out.set_text(valid_utf8(l.text));
    return out;
}

} // namespace vigil
