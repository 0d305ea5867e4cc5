// vigild's configuration: the TOML file of DESIGN.md, typed, plus command-line overrides.
//
// load_config() parses and validates the whole file before anything is started; every
// problem is reported as "FILE:LINE:COL: key: what is wrong". Values keep the
// ${state_dir}/${root_dir} placeholders until expand_config() is called, so that flags
// that change state_dir or root_dir (applied in between) take part in the expansion.
#pragma once

#include "vigil/limits.hpp"
#include "vigil/log.hpp"

#include <toml++/toml.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <variant>
#include <vector>

namespace vigil {

using Duration = std::chrono::milliseconds;

// Bounds on what a config may hold (docs/configuration.md, "Limits"). Every input path is
// bounded before it can cost stack, memory or time: a file or text beyond one of these is
// a config error, never a crash.
// The config file: a regular file of at most this many bytes.
inline constexpr std::size_t kMaxConfigSize = 1024 * 1024;
// Keys and array indices from the document root to the deepest value: [child.config.grpc]
// address is 4 deep, containerd's deepest keys about 8. Tables, arrays, inline tables and
// dotted keys all count; checked before the TOML parser (which recurses) sees the text.
inline constexpr int kMaxConfigDepth = 32;
// One key of a dotted path (a bare or quoted key).
inline constexpr std::size_t kMaxKeyLength = 1024;
// Paths (state_dir, root_dir, control_socket, binary, the health address): PATH_MAX - 1.
inline constexpr std::size_t kMaxPathLength = 4095;
// One argv or environment string ("NAME=value"): the kernel's MAX_ARG_STRLEN - 1.
inline constexpr std::size_t kMaxArgLength = 128 * 1024 - 1;
// Names: a group, a file name inside state_dir, a gRPC service, an enum or a duration.
inline constexpr std::size_t kMaxNameLength = 255;
// The path of a unix socket (sockaddr_un.sun_path without its NUL).
inline constexpr std::size_t kMaxUnixSocketPath = 107;

// "250ms", "3s", "5m", "1h" (and combinations such as "1m30s"). Returns nullopt on a
// malformed string; negative values cannot be written.
std::optional<Duration> parse_duration(std::string_view s);
// The shortest exact spelling: 1500ms -> "1500ms", 3000ms -> "3s", 300000ms -> "5m".
std::string format_duration(Duration d);

// "SIGTERM", "TERM", "15" -> 15. nullopt for unknown names or numbers outside 1..64, and
// for anything longer than a signal name can be.
std::optional<int> parse_signal(std::string_view s);
// 15 -> "SIGTERM"; a realtime or unknown number -> "SIG<number>".
std::string signal_name(int sig);

// oom_score_adj setting: a fixed score, or follow vigild's own score.
struct OomScore {
    bool inherit = true;
    int value = 0; // meaningful when !inherit; -1000..1000

    bool operator==(const OomScore&) const = default;
};
// "inherit" or an integer -1000..1000 (as text, e.g. from the command line).
std::optional<OomScore> parse_oom_score(std::string_view s);
std::string to_string(const OomScore& s);

enum class OutputMode { inherit, capture };
enum class HealthKind { grpc, none, http, tcp, exec, notify };
enum class RestartPolicy { always, on_failure, never };

struct DaemonConfig {
    std::string state_dir = "/run/vigil";
    std::string root_dir = "/var/lib/vigil";
    LogLevel log_level = LogLevel::info;
    std::string control_socket = "${state_dir}/vigild.sock";
    unsigned control_socket_mode = 0660;
    std::string control_socket_group;
    std::vector<uid_t> allowed_uids;
};

struct ChildConfig {
    std::string binary = "containerd";
    std::vector<std::string> args;
    std::string config_file = "containerd.toml"; // relative to state_dir; "" = none
    std::string config_flag = "--config";
    std::string log_level_flag = "--log-level"; // "" = do not pass the level
    OomScore oom_score_adj;                     // default: inherit
    int stop_signal = 15;                       // SIGTERM
    Duration stop_timeout = std::chrono::seconds(15);
    bool new_session = true;
    std::map<std::string, std::string> env;
    OutputMode output = OutputMode::inherit;
    // The execution environment (exec_env.hpp applies it before exec).
    std::string user;                              // name or uid; "" = vigild's
    std::string group;                             // name or gid; "" = the user's primary group
    std::vector<std::string> supplementary_groups; // empty with user set: the user's groups
    std::string working_directory = "/";
    mode_t umask = 022;
    std::vector<std::string> env_files; // "-PATH" = optional
    bool inherit_env = true;
    bool no_new_privileges = false;
    std::vector<RLimitSetting> limits; // [child.limits], in DESIGN's order
    // [child.config]: written as the child's config file. Default: containerd's.
    toml::table config;
};

struct HealthConfig {
    HealthKind kind = HealthKind::grpc;
    std::string address = "unix://${state_dir}/containerd.sock";
    std::string service;
    std::vector<std::string> command; // kind "exec": argv, the program looked up on PATH
    // kind "notify": a WATCHDOG=1 is due every this long (the child gets WATCHDOG_USEC);
    // nullopt: only once the child sent one, then every `timeout`.
    std::optional<Duration> watchdog;
    Duration interval = std::chrono::milliseconds(500);
    Duration timeout = std::chrono::seconds(3);
    int failure_threshold = 3;
    Duration startup_timeout = std::chrono::seconds(15);
    std::optional<int> dump_signal; // "" in the file = none
    Duration dump_wait = std::chrono::milliseconds(100);
};

struct RestartConfig {
    RestartPolicy policy = RestartPolicy::always;
    Duration backoff_initial = std::chrono::milliseconds(100);
    Duration backoff_max = std::chrono::seconds(30);
    Duration reset_after = std::chrono::seconds(60);
    int start_limit_burst = 10;
    Duration start_limit_interval = std::chrono::minutes(5);
    // A reload that changed the child, whose new child never became healthy (or did not
    // start), goes back to the previous configuration.
    bool rollback = true;
};

struct MetricsConfig {
    // "IP:PORT" or "[IPv6]:PORT": Prometheus text at http://listen/metrics; "" = off.
    std::string listen;
};

struct IncidentsConfig {
    // Where incident reports go ("" = none); ${state_dir}/${root_dir} are expanded.
    std::string dir = "${root_dir}/incidents";
    int keep = 20; // the newest reports kept
};

struct Config {
    DaemonConfig daemon;
    ChildConfig child;
    HealthConfig health;
    RestartConfig restart;
    MetricsConfig metrics;
    IncidentsConfig incidents;
    std::string source = "(defaults)"; // the file it came from, for messages

    Config(); // fills child.config with containerd's default config
};

// [health] address of kind http ("http://HOST:PORT/PATH") or tcp ("HOST:PORT"), parsed.
struct HealthEndpoint {
    std::string host; // a name or an address ([v6] without its brackets)
    unsigned port = 0;
    std::string path = "/"; // http
};
std::optional<HealthEndpoint> parse_health_endpoint(HealthKind kind, std::string_view address);
// Why `address` is not what `kind` takes, or nullopt.
std::optional<std::string> endpoint_problem(HealthKind kind, std::string_view address);

// Why `listen` is not "IP:PORT" or "[IPv6]:PORT" (a literal address: nothing is looked up),
// or nullopt when it is.
std::optional<std::string> metrics_listen_problem(std::string_view listen);

struct ConfigError {
    std::string message; // "FILE:LINE:COL: key: what is wrong"
};

// Parses a TOML document. `source` names it in messages (the path).
// On success every key has been type- and range-checked. The text is checked against
// kMaxConfigSize, kMaxConfigDepth and kMaxKeyLength before the TOML parser sees it.
std::variant<Config, ConfigError> parse_config(std::string_view toml_text, std::string_view source);
// What parse_config() checks before the TOML parser sees `text`: its size, its nesting
// depth and key lengths, and that non-ASCII bytes are only in strings and comments (as
// TOML wants them). One pass, no recursion; nullopt when the parser may have the text.
std::optional<ConfigError> check_config_text(std::string_view text, std::string_view source);

// Reads and parses a file. A missing file is an error here; the caller decides whether a
// missing default file means "defaults alone". Only a regular file of at most
// kMaxConfigSize bytes is read; it is opened with O_NONBLOCK, so a FIFO cannot block.
std::variant<Config, ConfigError> load_config(const std::string& path);

// What is wrong with `target` as the address of a gRPC health check; nullopt when it is a
// gRPC target vigild can dial: unix:/ABS, unix:///ABS, unix-abstract:NAME,
// dns:[//AUTHORITY/]HOST[:PORT], ipv4:ADDR[:PORT][,...], ipv6:ADDR|[ADDR]:PORT[,...], or
// HOST:PORT. A bare path is refused (gRPC would resolve it through DNS, forever).
std::optional<std::string> grpc_target_problem(std::string_view target);

// What can be checked only once ${state_dir}/${root_dir} are expanded (expand_config()):
// the lengths of the expanded paths, the health address as a gRPC target (for the grpc
// kind), and the size of [child.config] rendered by format_toml(). Messages start with
// "`origin`: " for the address (the flag or the file it came from) and with
// config.source otherwise.
std::optional<ConfigError> check_expanded_config(const Config& config,
                                                 std::string_view address_origin);

// Replaces ${state_dir} and ${root_dir} in control_socket, health.address, child.args and
// every string inside child.config (recursively).
void expand_config(Config& config);

// A TOML document as vigild writes it (the child's config file): basic strings. The
// table's depth is bounded by kMaxConfigDepth (it comes from parse_config()), and so is
// the formatter's recursion.
std::string format_toml(const toml::table& table);

// The configuration as TOML, every key present (what --check-config prints).
std::string to_toml(const Config& config);

// Names for enums, as they are written in the file.
std::string_view to_string(OutputMode m);
std::string_view to_string(HealthKind k);
std::string_view to_string(RestartPolicy p);

} // namespace vigil
