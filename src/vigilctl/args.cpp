// vigilctl's command line: its commands, their options and their help, described once
// for CLI11 (parsing and help read the same description).
#include "vigil/cli_parse.hpp"
#include "vigil/control_proto.hpp"
#include "vigil/ctl.hpp"
#include "vigil/socket_path.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <charconv>

namespace vigil::ctl {

namespace {

// What vigild accepts (control_server.cpp): a stop timeout of a day, a hold of a year.
constexpr Duration kMaxStopTimeout = std::chrono::hours(24);
constexpr Duration kMaxHold = std::chrono::hours(24 * 365);
constexpr std::size_t kMaxReason = 1024;
// Where command descriptions start in the command list of `vigilctl --help`.
constexpr std::size_t kCommandColumn = 25;

struct CommandSpec {
    const char* name;
    Command command;
    const char* synopsis; // what follows the name
    const char* summary;  // the line in `vigilctl --help`
    const char* detail;   // more, for `vigilctl help NAME`
};

constexpr CommandSpec kCommands[] = {
    {"status", Command::status, "",
     "the child's state, pid, uptime, restarts, last exit, health and OOM score (configured "
     "and actual); exit 3 if it is not running",
     "Exit status 3 (as systemctl status) when the child is not running: stopped, starting, "
     "unhealthy, in back-off, stopping or failed; with --json too."},
    {"start", Command::start, "",
     "start a stopped or failed child (and end a hold); a running child is left alone (exit "
     "0)",
     "Returns once the child is spawned."},
    {"stop", Command::stop, "[--timeout D] [--for D] [--reason TEXT]",
     "stop the child and keep it stopped, even across vigild restarts and crashes, until "
     "`start`, until --for runs out, or until vigild is stopped",
     "Sends the child its stop signal, then SIGKILL after the timeout, and returns once it is "
     "gone. A stopped child stays stopped (exit 0)."},
    {"restart", Command::restart, "", "stop the child if it runs, then start it again",
     "Returns once the new child is spawned."},
    {"kill", Command::kill, "SIGNAL", "send SIGNAL (SIGUSR1, usr1 or a number) to the child",
     "SIGNAL is a name, in any case, with or without SIG (SIGUSR1, USR1, usr1), or a number "
     "1..64. containerd writes its goroutine stacks on SIGUSR1."},
    {"oom-score", Command::oom_score, "[N|inherit]",
     "show the configured and the actual oom_score_adj, or set it (-1000..1000, or inherit) "
     "and apply it now",
     "Without a value: show the configured and the actual oom_score_adj. With one: set it to N "
     "(-1000..1000), or to inherit to follow vigild's own score, and apply it to the running "
     "child now. Until the next reload."},
    {"events", Command::events, "[-n N]",
     "print vigild's last N events, then its events as they happen, until interrupted",
     "Events are state changes, exits, health outcomes, OOM score changes, reloads and "
     "signals. vigild keeps the last 100."},
    {"logs", Command::logs, "[-f] [-n N]",
     "print the child's captured output ([child] output = \"capture\")",
     "vigild keeps the last [child] capture_lines lines. With [child] output = \"inherit\" "
     "the child's output goes where vigild's goes (the journal under systemd) and this "
     "command says so."},
    {"reload", Command::reload, "", "re-read vigild's configuration file (like SIGHUP)",
     "A bad file is refused and the running configuration kept. The child is restarted when "
     "what it runs changed."},
    {"config", Command::config, "[--rejected]",
     "print the configuration vigild runs with, as TOML (vigild --check-config's output)",
     "The effective configuration: the file, the flags vigild was started with and the "
     "defaults, after the last successful reload. With --rejected: the configuration the "
     "last rollback turned away ([restart] rollback)."},
    {"metrics", Command::metrics, "", "print vigild's metrics in the Prometheus text format",
     "The same text [metrics] listen serves over HTTP, with the status read just now: the "
     "child's state, restarts, start time and OOM score, health checks by result and their "
     "latency, OOM kills."},
    {"incidents", Command::incidents, "[ID]",
     "list the incident reports (hung child killed, unexpected death), or print one",
     "A report holds the reason, the last health checks with their latencies, the child's "
     "/proc status, wchan, stack and limits and its fd count (for a hang), the output it wrote "
     "during dump_wait or before dying, and the exit. vigild keeps [incidents] keep of them "
     "in [incidents] dir."},
    {"shutdown", Command::shutdown, "[--leave-running]",
     "make vigild exit; it stops the child first unless --leave-running is given",
     "With --leave-running the child keeps running and the next vigild adopts it (as on "
     "SIGUSR2)."},
    {"health", Command::health, "", "ask vigild itself for its grpc.health.v1 status",
     "Exit 0 when vigild answers SERVING."},
    {"help", Command::help, "[COMMAND]", "show this help, or a command's",
     "vigilctl help COMMAND is vigilctl COMMAND --help."},
};

const CommandSpec* spec_of(std::string_view name) {
    for (const auto& c : kCommands)
        if (name == c.name)
            return &c;
    return nullptr;
}

std::vector<std::string> command_names() {
    std::vector<std::string> names;
    for (const auto& c : kCommands)
        names.emplace_back(c.name);
    return names;
}

// The strings as given; checked after parsing, with vigilctl's own messages.
struct Raw {
    std::optional<std::string> socket, timeout, hold_for, reason, lines, signal, oom, topic,
        incident;
    bool json = false, help = false, version = false, follow = false, leave_running = false,
         rejected = false;
};

// The whole command line, described once for CLI11.
void describe(CLI::App& app, Raw& r) {
    app.description("Manage the child daemon that vigild supervises, through vigild's control "
                    "socket.");
    app.set_help_flag(); // ours, so help reads the same as vigild's
    app.allow_extras();  // worded by cli::parse (inherited by the commands)
    app.fallthrough();   // --socket and --json also after the command
    app.require_subcommand(0, 1);
    // A later option wins (as with most tools: a wrapper's defaults, then the operator's).
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.add_option("--socket", r.socket,
                   fmt::format("vigild's control socket (default: $VIGIL_SOCKET, else {})",
                               kDefaultControlSocket))
        ->option_text("PATH");
    app.add_flag("--json", r.json,
                 "print each reply as one JSON object per line (protobuf JSON mapping, "
                 "snake_case field names, every field present)");
    app.add_flag("-h,--help", r.help, "show this help, or the command's");
    app.add_flag("--version", r.version, "show vigilctl's version");
    for (const auto& c : kCommands) {
        CLI::App* sub = app.add_subcommand(c.name, c.summary);
        sub->description(fmt::format("{}{}. {}", static_cast<char>(std::toupper(c.summary[0])),
                                     c.summary + 1, c.detail));
        sub->add_flag("-h,--help", r.help, "show this help");
        switch (c.command) {
        case Command::stop:
            sub->add_option("--timeout", r.timeout,
                            "SIGKILL after D instead of [child] stop_timeout (at most 24h)")
                ->option_text("D");
            sub->add_option("--for", r.hold_for,
                            "keep it stopped for D only (at most 365d); then vigild starts it")
                ->option_text("D");
            sub->add_option("--reason", r.reason,
                            "why, for status, events and the journal (one line)")
                ->option_text("TEXT");
            break;
        case Command::kill:
            sub->add_option("signal", r.signal, "the signal");
            break;
        case Command::oom_score:
            sub->add_option("value", r.oom, "N or inherit");
            break;
        case Command::events:
            sub->add_option("-n,--lines", r.lines,
                            "how many past events to print first (default 10; 0: none)")
                ->option_text("N");
            break;
        case Command::logs:
            sub->add_flag("-f,--follow", r.follow, "keep printing new lines until interrupted");
            sub->add_option("-n,--lines", r.lines, "only the last N lines (default: all kept)")
                ->option_text("N");
            break;
        case Command::shutdown:
            sub->add_flag("--leave-running", r.leave_running,
                          "leave the child running (the next vigild adopts it)");
            break;
        case Command::help:
            sub->add_option("command", r.topic, "the command to explain");
            break;
        case Command::incidents:
            sub->add_option("id", r.incident, "the report to print");
            break;
        case Command::config:
            sub->add_flag("--rejected", r.rejected,
                          "the configuration a rollback turned away, instead");
            break;
        default:
            break;
        }
    }
}

std::optional<unsigned> number(const std::string& v) {
    unsigned n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size())
        return std::nullopt;
    return n;
}

// "kill -9", "kill -USR1": the signal written as an option.
std::optional<std::string> dashed_signal(const std::vector<std::string>& args) {
    bool after_kill = false;
    for (const auto& a : args) {
        if (a == "kill") {
            after_kill = true;
            continue;
        }
        if (after_kill && a.size() > 1 && a[0] == '-' && a != "--") {
            std::string name = a.substr(1);
            for (auto& ch : name)
                ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            if (name.size() <= 32 && parse_signal(name))
                return fmt::format("unknown option '{}': write the signal without '-': vigilctl "
                                   "kill {}",
                                   a, a.substr(1));
        }
    }
    return std::nullopt;
}

std::variant<Options, UsageError> check(Options o, const Raw& r) {
    if (r.socket) {
        if (r.socket->empty())
            return UsageError{"--socket needs a path"};
        o.socket = *r.socket;
    }
    o.json = r.json;
    if (r.timeout) {
        auto d = parse_duration(*r.timeout);
        if (!d || *d > kMaxStopTimeout)
            return UsageError{fmt::format("bad --timeout '{}' (a duration of at most 24h, such "
                                          "as 500ms, 10s or 1min 30s)",
                                          *r.timeout)};
        o.stop_timeout = *d;
    }
    if (r.hold_for) {
        auto d = parse_duration(*r.hold_for);
        if (!d || d->count() == 0 || *d > kMaxHold)
            return UsageError{fmt::format("bad --for '{}' (a duration greater than 0 and at most "
                                          "365d, such as 30min or 2h)",
                                          *r.hold_for)};
        o.hold_for = *d;
    }
    if (r.reason) {
        if (r.reason->size() > kMaxReason || r.reason->find_first_of("\n\r") != std::string::npos)
            return UsageError{
                fmt::format("bad --reason: one line of at most {} bytes", kMaxReason)};
        o.reason = *r.reason;
    }
    if (r.lines) {
        // logs: at least one line; events: 0 is "no replay, only new events".
        const unsigned least = o.command == Command::logs ? 1 : 0;
        const auto n = number(*r.lines);
        if (!n || *n < least)
            return UsageError{fmt::format("-n/--lines needs a number of lines of at least {}, "
                                          "not '{}'",
                                          least, r.lines->substr(0, 32))};
        o.lines = *n;
        o.lines_given = true;
    }
    o.follow = r.follow;
    o.rejected = r.rejected;
    if (r.incident) {
        if (r.incident->empty() || r.incident->size() > 64)
            return UsageError{"incidents takes an ID as `vigilctl incidents` lists it"};
        o.incident = *r.incident;
    }
    o.leave_running = r.leave_running;
    switch (o.command) {
    case Command::kill: {
        if (!r.signal)
            return UsageError{"kill needs exactly one SIGNAL (a name such as SIGUSR1 or a number)"};
        if (auto hint = dashed_signal({"kill", *r.signal})) // "-9" reaches here as a value
            return UsageError{*hint};
        // Checked here, as vigild would: names in any case ("usr1"), numbers 1..64.
        std::string name = *r.signal;
        for (auto& ch : name)
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (name.size() > 32 || !parse_signal(name))
            return UsageError{fmt::format("unknown signal '{}' (a name such as SIGUSR1 or USR1, "
                                          "or a number 1..64)",
                                          r.signal->substr(0, 32))};
        o.signal = name;
        break;
    }
    case Command::oom_score:
        if (r.oom) {
            const std::string& v = *r.oom;
            int n = 0;
            if (v == "inherit")
                o.oom = OomScore{true, 0};
            else if (auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                     ec == std::errc() && p == v.data() + v.size() && n >= -1000 && n <= 1000)
                o.oom = OomScore{false, n};
            else
                return UsageError{fmt::format("bad oom-score '{}' (an integer -1000..1000 or "
                                              "inherit)",
                                              v.substr(0, 32))};
        }
        break;
    case Command::help:
        if (r.topic) {
            if (spec_of(*r.topic) == nullptr)
                return UsageError{fmt::format("unknown command '{}'{}", r.topic->substr(0, 64),
                                              cli::suggestion(*r.topic, command_names()))};
            o.help_topic = *r.topic;
        }
        break;
    default:
        break;
    }
    return o;
}

} // namespace

std::variant<Options, UsageError> parse_args(const std::vector<std::string>& args) {
    Raw raw;
    CLI::App app{"", "vigilctl"};
    describe(app, raw);
    Options o;
    const CommandSpec* given = nullptr;
    if (auto err = cli::parse(app, args)) {
        if (auto hint = dashed_signal(args))
            return UsageError{*hint};
        return UsageError{*err};
    }
    for (const auto& c : kCommands)
        if (app.get_subcommand(c.name)->parsed())
            given = &c;
    if (raw.help) {
        o.command = Command::help;
        if (given != nullptr && given->command != Command::help)
            o.help_topic = given->name;
        return o;
    }
    if (raw.version) {
        o.command = Command::version;
        return o;
    }
    if (given == nullptr)
        return UsageError{"no command given"};
    o.command = given->command;
    return check(std::move(o), raw);
}

std::string help_text(std::string_view topic) {
    Raw raw;
    CLI::App app{"", "vigilctl"};
    describe(app, raw);
    if (const CommandSpec* c = spec_of(topic)) {
        const std::string usage = *c->synopsis != '\0'
                                      ? fmt::format("vigilctl {} {}", c->name, c->synopsis)
                                      : fmt::format("vigilctl {}", c->name);
        return cli::render_help(*app.get_subcommand(c->name), usage,
                                cli::wrap("Global options (--socket PATH, --json) may come "
                                          "before or after the command: see vigilctl --help.",
                                          0));
    }
    std::string commands = "Commands:\n";
    for (const auto& c : kCommands) {
        std::string head =
            fmt::format("  {}{}{}", c.name, *c.synopsis != '\0' ? " " : "", c.synopsis);
        if (head.size() + 2 > kCommandColumn)
            head += "\n" + std::string(kCommandColumn, ' ');
        else
            head.append(kCommandColumn - head.size(), ' ');
        commands += head + cli::wrap(c.summary, kCommandColumn) + "\n";
    }
    const std::string footer =
        "Run 'vigilctl help COMMAND' for a command's options.\n\n" +
        cli::wrap("Exit status: 0 success (also when events or logs -f is interrupted), 1 "
                  "vigild reported an error (message on stderr), 3 `status` of a child that is "
                  "not running, 64 bad command line, 69 vigild is unreachable.",
                  0) +
        "\n";
    return cli::render_help(app, "vigilctl [--socket PATH] [--json] COMMAND [ARGS]", footer,
                            commands);
}

} // namespace vigil::ctl
