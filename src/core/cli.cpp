#include "vigil/cli.hpp"
#include "vigil/cli_parse.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sys/stat.h>

namespace vigil {
namespace {

constexpr const char* kUsage = "vigild [OPTIONS] [-- CHILD-ARGS...]";
constexpr const char* kFooter =
    "Arguments after -- replace [child] args.\n\n"
    "Signals: SIGTERM/SIGINT stop the child and exit 0; SIGHUP reloads the config;\n"
    "SIGUSR2 exits leaving the child running (the next vigild adopts it).\n\n"
    "Exit status: 0 clean stop, 64 bad flags, 69 child never came up, 73 state dir\n"
    "cannot be created, 75 another vigild holds the state dir, 78 bad config.\n";

// The one description of vigild's flags: parsing and --help both read it.
void describe(CLI::App& app, Flags& f) {
    app.description("Supervises one daemon (containerd by default): writes its config file, "
                    "starts it, adopts it after vigild restarts, keeps its OOM score, restarts "
                    "it when it dies, and stops it cleanly. Each option overrides the matching "
                    "key of the config file.");
    app.set_help_flag(); // ours below, so help is rendered the same way as vigilctl's
    app.allow_extras();  // worded by cli::parse
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    auto text = [&](const char* name, std::optional<std::string>& into, const char* value,
                    const char* what) { app.add_option(name, into, what)->option_text(value); };
    text("--config", f.config_path, "FILE",
         "config file (TOML); default /etc/vigil/vigild.toml, where a missing file means the "
         "built-in defaults (which supervise containerd)");
    text("--state-dir", f.state_dir, "DIR",
         "[daemon] state_dir: pid file, child record, child config, lock and socket (created "
         "0700)");
    text("--root-dir", f.root_dir, "DIR",
         "[daemon] root_dir: persistent data dir handed to "
         "the child");
    text("--log-level", f.log_level, "LEVEL",
         "trace | debug | info | warn | error; also passed to the child");
    text("--oom-score-adjust", f.oom_score_adjust, "N|inherit",
         "[child] oom_score_adj: -1000..1000, or inherit to follow vigild's own score");
    text("--child-binary", f.child_binary, "PATH",
         "[child] binary: program to supervise (a name is looked up on PATH)");
    text("--control-socket", f.control_socket, "PATH",
         "[daemon] control_socket: unix socket of the control API");
    text("--health-address", f.health_address, "ADDR",
         "[health] address: where the child serves grpc.health.v1 (unix:///path or "
         "host:port)");
    app.add_flag("--no-health", f.no_health,
                 "[health] kind = \"none\": the child is running once exec succeeded");
    app.add_flag("--check-config", f.check_config,
                 "validate the configuration, print it as TOML and exit 0, or 78 when it is "
                 "invalid");
    app.add_flag("--version", f.version, "print the version and exit");
    app.add_flag("-h,--help", f.help, "print this help and exit");
}

} // namespace

std::string vigild_help() {
    CLI::App app{"", "vigild"};
    Flags f;
    describe(app, f);
    return cli::render_help(app, kUsage, kFooter);
}

std::variant<Flags, FlagsError> parse_flags(int argc, const char* const* argv) {
    // Child arguments come only after "--": a bare word before it is a mistake (a flag
    // without its dashes, a value without its flag), not a child argument.
    int split = argc;
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--") {
            split = i;
            break;
        }
    Flags f;
    CLI::App app{"", "vigild"};
    describe(app, f);
    if (auto err =
            cli::parse(app, std::vector<std::string>(argv + std::min(1, split), argv + split))) {
        if (err->rfind("unexpected argument", 0) == 0)
            *err += " (arguments for the child go after --)";
        return FlagsError{*err};
    }
    // "--" with nothing after it changes nothing (a wrapper passing "-- $@" with no args
    // must not wipe [child] args).
    if (split + 1 < argc)
        f.child_args = std::vector<std::string>(argv + split + 1, argv + argc);
    if (f.log_level && !parse_log_level(*f.log_level))
        return FlagsError{fmt::format("--log-level: unknown level '{}' (trace, debug, info, "
                                      "warn, error)",
                                      *f.log_level)};
    if (f.oom_score_adjust && !parse_oom_score(*f.oom_score_adjust))
        return FlagsError{fmt::format("--oom-score-adjust: '{}' is not an integer "
                                      "-1000..1000 or inherit",
                                      *f.oom_score_adjust)};
    for (auto* s : {&f.state_dir, &f.root_dir, &f.child_binary, &f.control_socket,
                    &f.health_address, &f.config_path}) {
        if (*s && (*s)->empty())
            return FlagsError{"an option was given an empty value"};
        if (*s && (*s)->size() > kMaxPathLength)
            return FlagsError{fmt::format("an option was given a value of {} bytes; paths and "
                                          "addresses may have at most {}",
                                          (*s)->size(), kMaxPathLength)};
    }
    return f;
}

std::variant<Config, ConfigError> load_effective_config(const Flags& flags, const DirsInUse* in_use,
                                                        std::string* dir_change) {
    Config config;
    const std::string path = flags.config_path.value_or(kDefaultConfigPath);
    struct stat st;
    const bool default_missing =
        !flags.config_path && ::stat(path.c_str(), &st) != 0 && errno == ENOENT;
    if (!default_missing) {
        auto loaded = load_config(path);
        if (auto* err = std::get_if<ConfigError>(&loaded))
            return *err;
        config = std::move(std::get<Config>(loaded));
    }
    return apply_flags(std::move(config), flags, in_use, dir_change);
}

std::variant<Config, ConfigError> apply_flags(Config config, const Flags& flags,
                                              const DirsInUse* in_use, std::string* dir_change) {
    if (flags.state_dir)
        config.daemon.state_dir = *flags.state_dir;
    if (flags.root_dir)
        config.daemon.root_dir = *flags.root_dir;
    if (flags.log_level)
        config.daemon.log_level = *parse_log_level(*flags.log_level);
    if (flags.oom_score_adjust)
        config.child.oom_score_adj = *parse_oom_score(*flags.oom_score_adjust);
    if (flags.child_binary)
        config.child.binary = *flags.child_binary;
    if (flags.control_socket)
        config.daemon.control_socket = *flags.control_socket;
    if (flags.health_address)
        config.health.address = *flags.health_address;
    if (flags.no_health)
        config.health.kind = HealthKind::none;
    if (flags.child_args)
        config.child.args = *flags.child_args;
    if (in_use) {
        std::string change;
        if (config.daemon.state_dir != in_use->state_dir)
            change += fmt::format("state_dir {} (in use: {})", config.daemon.state_dir,
                                  in_use->state_dir);
        if (config.daemon.root_dir != in_use->root_dir)
            change += fmt::format("{}root_dir {} (in use: {})", change.empty() ? "" : ", ",
                                  config.daemon.root_dir, in_use->root_dir);
        if (dir_change)
            *dir_change = change;
        config.daemon.state_dir = in_use->state_dir;
        config.daemon.root_dir = in_use->root_dir;
    }
    expand_config(config);
    const std::string address_origin = flags.health_address
                                           ? std::string("--health-address")
                                           : fmt::format("{}: health.address", config.source);
    if (auto err = check_expanded_config(config, address_origin))
        return *err;
    return config;
}

} // namespace vigil
