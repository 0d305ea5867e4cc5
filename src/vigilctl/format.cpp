// vigilctl's human and JSON output.
#include "vigil/control_proto.hpp"
#include "vigil/ctl.hpp"
#include "vigil/limits.hpp"
#include "vigil/socket_path.hpp"

#include <google/protobuf/util/json_util.h>

#include <charconv>
#include <ctime>
#include <fmt/format.h>

namespace vigil::ctl {

namespace {

std::string quote_arg(const std::string& a) {
    if (!a.empty() && a.find_first_of(" \t\n'\"\\$") == std::string::npos)
        return a;
    std::string out = "'";
    for (char c : a) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

} // namespace

std::string format_uptime(Duration d) {
    using namespace std::chrono;
    if (d < Duration::zero())
        d = Duration::zero();
    if (d < seconds(1))
        return fmt::format("{}ms", d.count());
    const auto s = duration_cast<seconds>(d).count();
    const long long days = s / 86400, hours = s % 86400 / 3600, mins = s % 3600 / 60, secs = s % 60;
    if (days > 0)
        return hours > 0 ? fmt::format("{}d {}h", days, hours) : fmt::format("{}d", days);
    if (hours > 0)
        return mins > 0 ? fmt::format("{}h {}min", hours, mins) : fmt::format("{}h", hours);
    if (mins > 0)
        return secs > 0 ? fmt::format("{}min {}s", mins, secs) : fmt::format("{}min", mins);
    return fmt::format("{}s", secs);
}

std::string format_local_time(const std::string& rfc3339, bool with_ms) {
    auto t = parse_rfc3339(rfc3339);
    if (!t)
        return rfc3339;
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(t->time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    long frac = static_cast<long>(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        --secs;
    }
    std::tm tm{};
    ::localtime_r(&secs, &tm);
    // One format everywhere (status, events, logs), always with the zone.
    char buf[64], zone[16];
    if (std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0 ||
        std::strftime(zone, sizeof zone, "%Z", &tm) == 0)
        return rfc3339;
    if (with_ms)
        return fmt::format("{}.{:03} {}", buf, frac, zone);
    return fmt::format("{} {}", buf, zone);
}

std::string format_status(const v1::StatusReply& s, SystemTime now) {
    std::string out;
    auto line = [&](std::string_view label, const std::string& value) {
        out += fmt::format("{:>10}: {}\n", label, value);
    };
    auto ago = [&](const std::string& when) -> std::string {
        auto t = parse_rfc3339(when);
        if (!t)
            return {};
        return fmt::format("; {} ago",
                           format_uptime(std::chrono::duration_cast<Duration>(now - *t)));
    };

    const std::string child_name =
        s.child().binary().empty() ? std::string("child") : s.child().binary();
    out += fmt::format("{} - supervised by vigild {} (pid {})\n", child_name, s.vigild().version(),
                       s.vigild().pid());

    std::string state = s.state();
    if (!s.state_reason().empty())
        state += fmt::format(" ({})", s.state_reason());
    if (!s.state_since().empty())
        state +=
            fmt::format(" since {}{}", format_local_time(s.state_since()), ago(s.state_since()));
    line("State", state);
    if (s.hold().active()) {
        std::string hold = "stopped by the operator";
        if (!s.hold().reason().empty())
            hold += fmt::format(" ({})", s.hold().reason());
        if (!s.hold().since().empty())
            hold += " since " + format_local_time(s.hold().since());
        hold += s.hold().until().empty() ? "; stays stopped until `vigilctl start`"
                                         : "; held until " + format_local_time(s.hold().until());
        line("Hold", hold);
    }
    if (!s.notify_status().empty())
        line("Notify", s.notify_status());
    if (!s.latest_incident().empty())
        line("Incident", fmt::format("{}: {} (vigilctl incidents {})", s.latest_incident(),
                                     s.latest_incident_reason(), s.latest_incident()));
    if (!s.rollback().empty())
        line("Rollback", fmt::format("to the previous configuration at {}: {} (the rejected "
                                     "one: vigilctl config --rejected)",
                                     format_local_time(s.rolled_back_at()), s.rollback()));
    if (!s.next_start_at().empty()) {
        std::string when = format_local_time(s.next_start_at());
        if (auto t = parse_rfc3339(s.next_start_at()); t && *t > now)
            when += fmt::format(" (in {})",
                                format_uptime(std::chrono::duration_cast<Duration>(*t - now)));
        line("Next start", when);
    }

    if (s.pid() != 0) {
        line("PID", fmt::format("{}{}", s.pid(), s.adopted() ? " (adopted)" : ""));
        if (auto t = parse_rfc3339(s.started_at()))
            line("Uptime",
                 fmt::format("{} (started {})",
                             format_uptime(std::chrono::duration_cast<Duration>(now - *t)),
                             format_local_time(s.started_at())));
    } else {
        line("PID", "none");
    }
    line("Restarts", std::to_string(s.restart_count()));

    const auto& exit = s.last_exit();
    if (exit.kind() == "none" || exit.kind().empty())
        line("Last exit", "none");
    else
        line("Last exit", exit.at().empty() ? exit.description()
                                            : fmt::format("{} at {}", exit.description(),
                                                          format_local_time(exit.at())));

    const auto& h = s.health();
    if (!h.enabled()) {
        line("Health", "not checked ([health] kind = \"none\")");
    } else {
        std::string health = h.last_result().empty() ? "not checked yet" : h.last_result();
        if (!h.last_check().empty())
            health += fmt::format(", last check {}", format_local_time(h.last_check()));
        health += fmt::format(", {} consecutive failure{}", h.consecutive_failures(),
                              h.consecutive_failures() == 1 ? "" : "s");
        line("Health", health);
    }
    line("OOM score", format_oom(s.oom()));

    std::string command;
    if (s.child().args_size() > 0) {
        for (const auto& a : s.child().args()) {
            if (!command.empty())
                command += ' ';
            command += quote_arg(a);
        }
    } else {
        command = s.child().binary();
    }
    line("Command", command.empty() ? "-" : command);
    if (!s.child().user().empty())
        line("User", s.child().user());
    if (!s.child().working_directory().empty())
        line("Directory", s.child().working_directory());
    if (!s.child().limits().empty()) {
        // In the order of the configuration keys, not the map's.
        std::string limits;
        for (auto name : rlimit_names()) {
            auto it = s.child().limits().find(std::string(name));
            if (it != s.child().limits().end())
                limits += fmt::format("{}{}={}", limits.empty() ? "" : " ", name, it->second);
        }
        line("Limits", limits);
    }
    line("Output", s.child().output());
    return out;
}

std::string format_oom(const v1::OomInfo& oom) {
    return fmt::format("configured {}, actual {}", oom.configured(),
                       oom.actual_known() ? std::to_string(oom.actual()) : std::string("unknown"));
}

std::string format_event(const v1::Event& e) {
    return fmt::format("{} #{} {}: {}", format_local_time(e.time(), true), e.seq(), e.kind(),
                       e.message());
}

std::string format_log_line(const v1::LogLine& l) {
    return fmt::format("{} [{}] {}: {}", format_local_time(l.time(), true), l.pid(), l.stream(),
                       l.text());
}

std::string to_json(const google::protobuf::Message& m) {
    google::protobuf::util::JsonPrintOptions opts;
    opts.add_whitespace = false;
    opts.always_print_primitive_fields = true;
    opts.preserve_proto_field_names = true;
    std::string out;
    if (auto st = google::protobuf::util::MessageToJsonString(m, &out, opts); !st.ok())
        return fmt::format(R"({{"error":"cannot print reply as JSON: {}"}})",
                           std::string(st.message()));
    return out;
}

} // namespace vigil::ctl
