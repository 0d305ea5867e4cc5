// vigilctl's command line and its human and JSON output.
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

struct CommandName {
    std::string_view name;
    Command command;
};

constexpr CommandName kCommands[] = {
    {"status", Command::status},     {"start", Command::start},   {"stop", Command::stop},
    {"restart", Command::restart},   {"kill", Command::kill},     {"oom-score", Command::oom_score},
    {"events", Command::events},     {"logs", Command::logs},     {"reload", Command::reload},
    {"shutdown", Command::shutdown}, {"health", Command::health}, {"help", Command::help},
};

std::optional<Command> command_from(std::string_view s) {
    for (const auto& c : kCommands)
        if (c.name == s)
            return c.command;
    return std::nullopt;
}

bool is_integer(std::string_view s) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size();
}

// "--name=value" or "--name value"; `i` moves past what was used.
std::optional<std::string> option_value(const std::vector<std::string>& args, std::size_t& i,
                                        std::string_view name, std::string* error) {
    const std::string& a = args[i];
    if (a.size() > name.size() && a.compare(0, name.size(), name) == 0 && a[name.size()] == '=')
        return a.substr(name.size() + 1);
    if (i + 1 >= args.size()) {
        *error = fmt::format("{} needs a value", name);
        return std::nullopt;
    }
    return args[++i];
}

bool option_is(std::string_view arg, std::string_view name) {
    return arg == name || (arg.size() > name.size() && arg.substr(0, name.size()) == name &&
                           arg[name.size()] == '=');
}

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

// What vigild accepts (control_server.cpp): a stop timeout of a day, a hold of a year.
constexpr Duration kMaxStopTimeout = std::chrono::hours(24);
constexpr Duration kMaxHold = std::chrono::hours(24 * 365);
constexpr std::size_t kMaxReason = 1024;

std::variant<Options, UsageError> parse_args(const std::vector<std::string>& args) {
    Options o;
    bool have_command = false;
    bool options_done = false;
    std::vector<std::string> positional;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string error;
        const bool looks_like_option = !options_done && a.size() > 1 && a[0] == '-';
        // "oom-score -500": a negative score is a value, not an option.
        if (looks_like_option &&
            !(have_command && o.command == Command::oom_score && is_integer(a))) {
            if (a == "--") {
                options_done = true;
            } else if (a == "-h" || a == "--help") {
                o.command = Command::help;
                return o;
            } else if (a == "--version") {
                o.command = Command::version;
                return o;
            } else if (a == "--json") {
                o.json = true;
            } else if (option_is(a, "--socket")) {
                auto v = option_value(args, i, "--socket", &error);
                if (!v)
                    return UsageError{error};
                if (v->empty())
                    return UsageError{"--socket needs a path"};
                o.socket = *v;
            } else if (have_command && o.command == Command::stop && option_is(a, "--timeout")) {
                auto v = option_value(args, i, "--timeout", &error);
                if (!v)
                    return UsageError{error};
                auto d = parse_duration(*v);
                if (!d || *d > kMaxStopTimeout)
                    return UsageError{fmt::format(
                        "bad --timeout '{}' (a duration of at most 24h, such as 500ms, 10s or "
                        "1m30s)",
                        *v)};
                o.stop_timeout = *d;
            } else if (have_command && o.command == Command::stop && option_is(a, "--for")) {
                auto v = option_value(args, i, "--for", &error);
                if (!v)
                    return UsageError{error};
                auto d = parse_duration(*v);
                if (!d || d->count() == 0 || *d > kMaxHold)
                    return UsageError{fmt::format(
                        "bad --for '{}' (a duration greater than 0 and at most 365d, such as "
                        "30min or 2h)",
                        *v)};
                o.hold_for = *d;
            } else if (have_command && o.command == Command::stop && option_is(a, "--reason")) {
                auto v = option_value(args, i, "--reason", &error);
                if (!v)
                    return UsageError{error};
                if (v->size() > kMaxReason || v->find_first_of("\n\r") != std::string::npos)
                    return UsageError{
                        fmt::format("bad --reason: one line of at most {} bytes", kMaxReason)};
                o.reason = *v;
            } else if (have_command && o.command == Command::logs &&
                       (a == "-f" || a == "--follow")) {
                o.follow = true;
            } else if (have_command &&
                       (o.command == Command::logs || o.command == Command::events) &&
                       (a == "-n" || option_is(a, "--lines"))) {
                auto v = a == "-n" ? (i + 1 < args.size() ? std::optional<std::string>(args[++i])
                                                          : std::nullopt)
                                   : option_value(args, i, "--lines", &error);
                unsigned n = 0;
                // logs: at least one line; events: 0 is "no replay, only new events".
                const unsigned least = o.command == Command::logs ? 1 : 0;
                if (!v ||
                    std::from_chars(v->data(), v->data() + v->size(), n).ptr !=
                        v->data() + v->size() ||
                    v->empty() || n < least)
                    return UsageError{
                        fmt::format("{} needs a number of lines of at least {}", a, least)};
                o.lines = n;
                o.lines_given = true;
            } else if (have_command && o.command == Command::shutdown && a == "--leave-running") {
                o.leave_running = true;
            } else {
                // "kill -9": the signal is an argument, not an option.
                if (have_command && o.command == Command::kill && a.size() > 1 &&
                    parse_signal(a.substr(1)))
                    return UsageError{fmt::format("unknown option '{}': write the signal without "
                                                  "'-': vigilctl kill {}",
                                                  a, a.substr(1))};
                return UsageError{fmt::format("unknown option '{}'{}", a,
                                              have_command ? " for this command" : "")};
            }
            continue;
        }
        if (!have_command) {
            auto c = command_from(a);
            if (!c)
                return UsageError{fmt::format("unknown command '{}'", a)};
            o.command = *c;
            have_command = true;
            continue;
        }
        positional.push_back(a);
    }
    if (!have_command)
        return UsageError{"no command given"};

    switch (o.command) {
    case Command::kill: {
        if (positional.size() != 1)
            return UsageError{"kill needs exactly one SIGNAL (a name such as SIGUSR1 or a number)"};
        // Checked here, as vigild would: names in any case ("usr1"), numbers 1..64.
        std::string name = positional[0];
        for (auto& ch : name)
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (name.size() > 32 || !parse_signal(name))
            return UsageError{fmt::format("unknown signal '{}' (a name such as SIGUSR1 or USR1, "
                                          "or a number 1..64)",
                                          positional[0].substr(0, 32))};
        o.signal = name;
        return o;
    }
    case Command::oom_score:
        if (positional.size() > 1)
            return UsageError{"oom-score takes at most one value (N or inherit)"};
        if (positional.size() == 1) {
            const std::string& v = positional[0];
            int n = 0;
            if (v == "inherit")
                o.oom = OomScore{true, 0};
            else if (auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                     ec == std::errc() && p == v.data() + v.size() && n >= -1000 && n <= 1000)
                o.oom = OomScore{false, n};
            else
                return UsageError{
                    fmt::format("bad oom-score '{}' (an integer -1000..1000 or inherit)", v)};
        }
        return o;
    case Command::status:
    case Command::start:
    case Command::stop:
    case Command::restart:
    case Command::events:
    case Command::logs:
    case Command::reload:
    case Command::shutdown:
    case Command::health:
    case Command::help:
    case Command::version:
        if (!positional.empty())
            return UsageError{fmt::format("unexpected argument '{}'", positional[0])};
        return o;
    }
    return o;
}

std::string help_text() {
    return fmt::format(
        R"(usage: vigilctl [--socket PATH] [--json] COMMAND [ARGS]

Manage the child daemon that vigild supervises, through vigild's control socket.

Commands:
  status                 the child's state, pid, uptime, restarts, last exit, health and
                         OOM score (configured and actual); exit 3 if it is not running
  start                  start a stopped or failed child (and end a hold); a running
                         child is left alone (exit 0)
  stop [--timeout D] [--for D] [--reason TEXT]
                         stop the child: its stop signal, then SIGKILL after --timeout
                         (default: [child] stop_timeout); returns once it is gone. It
                         stays stopped, even across vigild restarts and crashes, until
                         `start`, until --for runs out, or until vigild is stopped
  restart                stop the child if it runs, then start it again
  kill SIGNAL            send SIGNAL (SIGUSR1, USR1 or a number) to the child
  oom-score [N|inherit]  without a value: show the configured and the actual
                         oom_score_adj; with one: set it (-1000..1000, or inherit to
                         follow vigild's own score) and apply it now
  events [-n N]          print vigild's last N events (default 10; -n 0: none), then
                         its events (state changes, exits, health, OOM, reloads,
                         signals) as they happen, until interrupted
  logs [-f] [-n N]       print the child's captured output ([child] output = "capture");
                         -n/--lines N only the last N lines; -f/--follow keeps printing
                         new lines until interrupted
  reload                 re-read vigild's configuration file (like SIGHUP)
  shutdown [--leave-running]
                         make vigild exit; it stops the child first unless
                         --leave-running is given (the next vigild adopts it)
  health                 ask vigild itself for its grpc.health.v1 status

Options:
  --socket PATH  vigild's control socket (default: $VIGIL_SOCKET, else {})
  --json         print each reply as one JSON object per line (protobuf JSON mapping,
                 snake_case field names, every field present)
  -h, --help     show this help
  --version      show vigilctl's version

Exit status: 0 success (also when events or logs -f is interrupted), 1 vigild reported
an error (message on stderr), 3 `status` of a child that is not running, 64 bad command
line, 69 vigild is unreachable.
)",
        kDefaultControlSocket);
}

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
