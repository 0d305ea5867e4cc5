#include "vigil/cli.hpp"
#include "vigil/config.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// From CMake, not __FILE__: a package build maps source paths to relative ones.
const std::filesystem::path project_dir = VIGIL_SOURCE_DIR;

std::string error_of(std::string_view doc) {
    auto result = parse_config(doc, "test.toml");
    const auto* e = std::get_if<ConfigError>(&result);
    return e != nullptr ? e->message : "(no error)";
}

Config parsed(std::string_view doc, std::string_view source = "test.toml") {
    auto result = parse_config(doc, source);
    if (const auto* e = std::get_if<ConfigError>(&result))
        FAIL(e->message);
    return std::get<Config>(std::move(result));
}

void check_same(const Config& a, const Config& b) {
    CHECK(a.daemon.state_dir == b.daemon.state_dir);
    CHECK(a.daemon.root_dir == b.daemon.root_dir);
    CHECK(a.daemon.log_level == b.daemon.log_level);
    CHECK(a.daemon.control_socket == b.daemon.control_socket);
    CHECK(a.daemon.control_socket_mode == b.daemon.control_socket_mode);
    CHECK(a.daemon.control_socket_group == b.daemon.control_socket_group);
    CHECK(a.daemon.allowed_uids == b.daemon.allowed_uids);
    CHECK(a.child.binary == b.child.binary);
    CHECK(a.child.args == b.child.args);
    CHECK(a.child.config_file == b.child.config_file);
    CHECK(a.child.config_flag == b.child.config_flag);
    CHECK(a.child.log_level_flag == b.child.log_level_flag);
    CHECK(a.child.oom_score_adj == b.child.oom_score_adj);
    CHECK(a.child.stop_signal == b.child.stop_signal);
    CHECK(a.child.stop_timeout == b.child.stop_timeout);
    CHECK(a.child.new_session == b.child.new_session);
    CHECK(a.child.env == b.child.env);
    CHECK(a.child.output == b.child.output);
    CHECK(a.child.config == b.child.config);
    CHECK(a.health.kind == b.health.kind);
    CHECK(a.health.address == b.health.address);
    CHECK(a.health.service == b.health.service);
    CHECK(a.health.interval == b.health.interval);
    CHECK(a.health.timeout == b.health.timeout);
    CHECK(a.health.failure_threshold == b.health.failure_threshold);
    CHECK(a.health.startup_timeout == b.health.startup_timeout);
    CHECK(a.health.dump_signal == b.health.dump_signal);
    CHECK(a.health.dump_wait == b.health.dump_wait);
    CHECK(a.restart.policy == b.restart.policy);
    CHECK(a.restart.backoff_initial == b.restart.backoff_initial);
    CHECK(a.restart.backoff_max == b.restart.backoff_max);
    CHECK(a.restart.reset_after == b.restart.reset_after);
    CHECK(a.restart.start_limit_burst == b.restart.start_limit_burst);
    CHECK(a.restart.start_limit_interval == b.restart.start_limit_interval);
    CHECK(a.restart.rollback == b.restart.rollback);
    CHECK(a.health.command == b.health.command);
    CHECK(a.health.watchdog == b.health.watchdog);
    CHECK(a.metrics.listen == b.metrics.listen);
    CHECK(a.incidents.dir == b.incidents.dir);
    CHECK(a.incidents.keep == b.incidents.keep);
}

void check_round_trip(const Config& config) {
    std::string text = to_toml(config);
    INFO(text);
    check_same(parsed(text), config);
}

// Every dotted key path of a TOML document (tables included).
void collect_keys(const toml::table& t, const std::string& prefix, std::set<std::string>& out) {
    for (auto&& [k, v] : t) {
        std::string path =
            prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
        out.insert(path);
        if (const auto* sub = v.as_table(); sub != nullptr && path != "child.config")
            collect_keys(*sub, path, out);
    }
}

std::set<std::string> keys_of(const toml::table& t) {
    std::set<std::string> out;
    collect_keys(t, "", out);
    return out;
}

} // namespace

TEST_CASE("parse_duration takes systemd time spans", "[config]") {
    const std::pair<const char*, int64_t> cases[] = {
        {"250ms", 250},
        {"0ms", 0},
        {"0", 0},
        {"3s", 3'000},
        {"007s", 7'000},
        {"5", 5'000}, // a bare number is seconds, as in systemd
        {"1500ms", 1'500},
        {"5m", 300'000},
        {"5min", 300'000},
        {"1h", 3'600'000},
        {"1m30s", 90'000},
        {"1min 30s", 90'000},
        {"1 min 30 s", 90'000},
        {" 2s ", 2'000},
        {"30s1m", 90'000}, // any order, summed
        {"1s1s", 2'000},
        {"1.5s", 1'500},
        {"0.25min", 15'000},
        {"1.001s", 1'001},
        {"1h2m3s4ms", 3'723'004},
        {"1d", 86'400'000},
        {"2days", 172'800'000},
        {"1w", 604'800'000},
        {"1sec", 1'000},
        {"10seconds", 10'000},
        {"2 hours", 7'200'000},
        {"3msec", 3},
        {"90m", 5'400'000},
        {"9223372036854ms", 9'223'372'036'854},
        {"2562047h", 2'562'047LL * 3'600'000},
    };
    for (const auto& [text, ms] : cases) {
        CAPTURE(text);
        auto d = parse_duration(text);
        REQUIRE(d.has_value());
        CHECK(d->count() == ms);
    }
}

TEST_CASE("parse_duration rejects malformed strings", "[config]") {
    const char* cases[] = {"",
                           " ",
                           "s",
                           "ms",
                           "1.5ms",
                           "0.0001s",
                           "-1s",
                           "+1s",
                           "1S",
                           "1e3ms",
                           "ms5",
                           "5mss",
                           "1x",
                           "0x10s",
                           "inf",
                           "1h-5m",
                           "1m,5s",
                           "1.s",
                           ".5s",
                           "2562048h",
                           "9223372036855ms",
                           "99999999999999999999ms"};
    for (const char* text : cases) {
        CAPTURE(text);
        CHECK_FALSE(parse_duration(text).has_value());
    }
}

TEST_CASE("format_duration prints as systemd does, and what it prints parses back", "[config]") {
    const std::pair<int64_t, const char*> cases[] = {
        {0, "0"},
        {1, "1ms"},
        {999, "999ms"},
        {1'000, "1s"},
        {1'500, "1s 500ms"},
        {13'782, "13s 782ms"},
        {60'000, "1min"},
        {90'000, "1min 30s"},
        {300'000, "5min"},
        {3'600'000, "1h"},
        {3'601'000, "1h 1s"},
        {5'400'000, "1h 30min"},
        {86'400'000, "1d"},
        {90'061'001, "1d 1h 1min 1s 1ms"},
    };
    for (const auto& [ms, text] : cases) {
        CAPTURE(ms);
        CHECK(format_duration(Duration(ms)) == text);
        CHECK(parse_duration(text) == Duration(ms));
    }
}

TEST_CASE("parse_signal takes names with or without SIG and numbers", "[config]") {
    const std::pair<const char*, int> cases[] = {
        {"SIGTERM", SIGTERM},
        {"TERM", SIGTERM},
        {"15", SIGTERM},
        {"SIGKILL", SIGKILL},
        {"KILL", SIGKILL},
        {"SIGUSR1", SIGUSR1},
        {"USR2", SIGUSR2},
        {"SIGHUP", SIGHUP},
        {"SIGWINCH", SIGWINCH},
        {"SIGCHLD", SIGCHLD},
        {"SIGSYS", SIGSYS},
        {"SIGSTKFLT", SIGSTKFLT},
        {"PWR", SIGPWR},
        {"1", 1},
        {"64", 64},
        {"SIG40", 40},
        {"SIGRTMIN", SIGRTMIN},
        {"SIGRTMIN+2", SIGRTMIN + 2},
        {"RTMIN+0", SIGRTMIN},
        {"SIGRTMAX", SIGRTMAX},
        {"SIGRTMAX-1", SIGRTMAX - 1},
    };
    for (const auto& [text, sig] : cases) {
        CAPTURE(text);
        CHECK(parse_signal(text) == sig);
    }
}

TEST_CASE("parse_signal rejects unknown names and numbers outside 1..64", "[config]") {
    const char* cases[] = {"",
                           "SIG",
                           "sigterm",
                           "Term",
                           "0",
                           "65",
                           "-1",
                           "+15",
                           "15x",
                           " 15",
                           "SIGTERM ",
                           "SIGFOO",
                           "SIGSIGTERM",
                           "SIG0",
                           "SIG65",
                           "SIGRTMIN+",
                           "SIGRTMIN+100",
                           "SIGRTMIN-1",
                           "SIGRTMAX+1",
                           "SIGRTMAX-99",
                           "SIGRTMIN+2147483647",
                           "99999999999999",
                           "SIGRTMIN+x"};
    for (const char* text : cases) {
        CAPTURE(text);
        CHECK_FALSE(parse_signal(text).has_value());
    }
}

TEST_CASE("signal_name names standard signals and numbers the rest", "[config]") {
    CHECK(signal_name(SIGTERM) == "SIGTERM");
    CHECK(signal_name(SIGKILL) == "SIGKILL");
    CHECK(signal_name(SIGUSR1) == "SIGUSR1");
    CHECK(signal_name(40) == "SIG40");
    CHECK(signal_name(0) == "SIG0");
    for (int sig = 1; sig <= 64; ++sig) {
        CAPTURE(sig);
        CHECK(parse_signal(signal_name(sig)) == sig);
    }
}

TEST_CASE("parse_oom_score takes inherit or -1000..1000", "[config]") {
    CHECK(parse_oom_score("inherit") == OomScore{});
    CHECK(parse_oom_score("0") == OomScore{false, 0});
    CHECK(parse_oom_score("-0") == OomScore{false, 0});
    CHECK(parse_oom_score("-1000") == OomScore{false, -1000});
    CHECK(parse_oom_score("1000") == OomScore{false, 1000});
    CHECK(parse_oom_score("-500") == OomScore{false, -500});
    for (const char* text : {"", "1001", "-1001", "Inherit", "inherit ", "5x", " 5", "+5", "1e3",
                             "99999999999", "-"}) {
        CAPTURE(text);
        CHECK_FALSE(parse_oom_score(text).has_value());
    }
    CHECK(to_string(OomScore{}) == "inherit");
    CHECK(to_string(OomScore{false, -500}) == "-500");
    CHECK(to_string(OomScore{false, 0}) == "0");
}

TEST_CASE("enum names", "[config]") {
    CHECK(to_string(OutputMode::inherit) == "inherit");
    CHECK(to_string(OutputMode::capture) == "capture");
    CHECK(to_string(HealthKind::grpc) == "grpc");
    CHECK(to_string(HealthKind::none) == "none");
    CHECK(to_string(RestartPolicy::always) == "always");
    CHECK(to_string(RestartPolicy::on_failure) == "on-failure");
    CHECK(to_string(RestartPolicy::never) == "never");
}

TEST_CASE("an empty document gives every default of DESIGN.md", "[config]") {
    Config c = parsed("");
    CHECK(c.source == "test.toml");
    CHECK(c.daemon.state_dir == "/run/vigil");
    CHECK(c.daemon.root_dir == "/var/lib/vigil");
    CHECK(c.daemon.log_level == LogLevel::info);
    CHECK(c.daemon.control_socket == "${state_dir}/vigild.sock");
    CHECK(c.daemon.control_socket_mode == 0660);
    CHECK(c.daemon.control_socket_group.empty());
    CHECK(c.daemon.allowed_uids.empty());
    CHECK(c.child.binary == "containerd");
    CHECK(c.child.args.empty());
    CHECK(c.child.config_file == "containerd.toml");
    CHECK(c.child.config_flag == "--config");
    CHECK(c.child.log_level_flag == "--log-level");
    CHECK(c.child.oom_score_adj == OomScore{});
    CHECK(c.child.stop_signal == SIGTERM);
    CHECK(c.child.stop_timeout == 15s);
    CHECK(c.child.new_session);
    CHECK(c.child.env.empty());
    CHECK(c.child.output == OutputMode::inherit);
    CHECK(c.child.config.size() == 4);
    CHECK(c.child.config["version"].value<int64_t>() == 2);
    CHECK(c.child.config["root"].value<std::string>() == "${root_dir}/containerd");
    CHECK(c.child.config["state"].value<std::string>() == "${state_dir}/containerd");
    CHECK(c.child.config["grpc"]["address"].value<std::string>() == "${state_dir}/containerd.sock");
    CHECK(c.child.config["grpc"].as_table()->size() == 1);
    CHECK(c.health.kind == HealthKind::grpc);
    CHECK(c.health.address == "unix://${state_dir}/containerd.sock");
    CHECK(c.health.service.empty());
    CHECK(c.health.interval == 500ms);
    CHECK(c.health.timeout == 3s);
    CHECK(c.health.failure_threshold == 3);
    CHECK(c.health.startup_timeout == 15s);
    CHECK_FALSE(c.health.dump_signal.has_value());
    CHECK(c.health.dump_wait == 100ms);
    CHECK(c.restart.policy == RestartPolicy::always);
    CHECK(c.restart.backoff_initial == 100ms);
    CHECK(c.restart.backoff_max == 30s);
    CHECK(c.restart.reset_after == 60s);
    CHECK(c.restart.start_limit_burst == 10);
    CHECK(c.restart.start_limit_interval == 5min);
    check_same(c, Config{});
    CHECK(Config{}.source == "(defaults)");
}

TEST_CASE("every key is read", "[config]") {
    Config c = parsed(R"(
[daemon]
state_dir = "/s"
root_dir = "/r"
log_level = "debug"
control_socket = "/tmp/v.sock"
control_socket_mode = "600"
control_socket_group = "vigil"
allowed_uids = [0, 1000, 4294967294]

[child]
binary = "/usr/bin/fake"
args = ["--x", "${root_dir}"]
config_file = ""
config_flag = "-c"
log_level_flag = ""
oom_score_adj = -999
stop_signal = "INT"
stop_timeout = "2m"
new_session = false
env = { A = "1", "B C" = "" }
output = "capture"
config = { x = 1 }

[health]
kind = "none"
address = ""
service = "svc"
interval = "1s"
timeout = "250ms"
failure_threshold = 1
startup_timeout = "1h"
dump_signal = "SIGUSR1"
dump_wait = "0ms"

[restart]
policy = "on-failure"
backoff_initial = "1s"
backoff_max = "1s"
reset_after = "10m"
start_limit_burst = 1
start_limit_interval = "1m30s"
)");
    CHECK(c.daemon.state_dir == "/s");
    CHECK(c.daemon.root_dir == "/r");
    CHECK(c.daemon.log_level == LogLevel::debug);
    CHECK(c.daemon.control_socket == "/tmp/v.sock");
    CHECK(c.daemon.control_socket_mode == 0600);
    CHECK(c.daemon.control_socket_group == "vigil");
    CHECK(c.daemon.allowed_uids == std::vector<uid_t>{0, 1000, 4294967294u});
    CHECK(c.child.binary == "/usr/bin/fake");
    CHECK(c.child.args == std::vector<std::string>{"--x", "${root_dir}"});
    CHECK(c.child.config_file.empty());
    CHECK(c.child.config_flag == "-c");
    CHECK(c.child.log_level_flag.empty());
    CHECK(c.child.oom_score_adj == OomScore{false, -999});
    CHECK(c.child.stop_signal == SIGINT);
    CHECK(c.child.stop_timeout == 2min);
    CHECK_FALSE(c.child.new_session);
    CHECK(c.child.env == std::map<std::string, std::string>{{"A", "1"}, {"B C", ""}});
    CHECK(c.child.output == OutputMode::capture);
    CHECK(c.child.config.size() == 1);
    CHECK(c.child.config["x"].value<int64_t>() == 1);
    CHECK(c.health.kind == HealthKind::none);
    CHECK(c.health.address.empty());
    CHECK(c.health.service == "svc");
    CHECK(c.health.interval == 1s);
    CHECK(c.health.timeout == 250ms);
    CHECK(c.health.failure_threshold == 1);
    CHECK(c.health.startup_timeout == 1h);
    CHECK(c.health.dump_signal == SIGUSR1);
    CHECK(c.health.dump_wait == 0ms);
    CHECK(c.restart.policy == RestartPolicy::on_failure);
    CHECK(c.restart.backoff_initial == 1s);
    CHECK(c.restart.backoff_max == 1s);
    CHECK(c.restart.reset_after == 10min);
    CHECK(c.restart.start_limit_burst == 1);
    CHECK(c.restart.start_limit_interval == 90s);
}

TEST_CASE("[child.config] replaces the default table entirely", "[config]") {
    Config c = parsed(R"(
[child.config]
version = 3
[child.config.plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "pause:3.9"
)");
    CHECK(c.child.config.size() == 2);
    CHECK(c.child.config["version"].value<int64_t>() == 3);
    CHECK_FALSE(c.child.config.contains("root"));
    CHECK_FALSE(c.child.config.contains("grpc"));
    CHECK(c.child.config["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
              .value<std::string>() == "pause:3.9");

    CHECK(parsed("[child.config]\n").child.config.empty());
    // Keys of other tables leave the default alone.
    CHECK(parsed("[child]\nbinary = \"x\"\n").child.config == Config{}.child.config);
}

TEST_CASE("valid edge cases are accepted", "[config]") {
    const char* cases[] = {
        "[health]\ndump_wait = \"0ms\"\n",
        "[health]\ndump_signal = \"\"\n",
        "[health]\nkind = \"none\"\naddress = \"\"\n",
        "[daemon]\ncontrol_socket_mode = \"0777\"\n",
        "[daemon]\ncontrol_socket_mode = \"0\"\n",
        "[daemon]\ncontrol_socket_mode = \"00660\"\n",
        "[daemon]\nlog_level = \"trace\"\n",
        "[child]\noom_score_adj = -1000\n",
        "[child]\noom_score_adj = 1000\n",
        "[child]\nstop_signal = \"9\"\n",
        "[child]\nconfig_file = \"\"\n",
        "[child.config]\nany = { thing = [1, \"two\", 3.0] }\n[[child.config.list]]\n",
        "[child.config]\ns = \"${state_dir}${root_dir}$state_dir{}$\"\n",
        "[restart]\nbackoff_initial = \"30s\"\n",
        "[daemon]\n[child]\n[child.env]\n[health]\n[restart]\n",
    };
    for (const char* doc : cases) {
        CAPTURE(doc);
        CHECK(error_of(doc) == "(no error)");
    }
}

TEST_CASE("errors name FILE:LINE:COL, the key and what is wrong", "[config]") {
    struct Case {
        const char* doc;
        const char* prefix;
        const char* gist;
    };
    const Case cases[] = {
        // TOML syntax
        {"a = \n", "test.toml:1:5: ", "expected value"},
        {"[daemon]\nstate_dir = \"x\"\nstate_dir = \"y\"\n", "test.toml:3:13: ", "cannot redefine"},
        // unknown tables and keys
        {"[helth]\n", "test.toml:1:2: helth: ",
         "unknown key; valid keys at the top level: daemon, "
         "child, health, restart"},
        {"[child]\nbinry = \"x\"\n",
         "test.toml:2:1: child.binry: ", "unknown key; valid keys in [child]: binary, args,"},
        {"child.binry = \"x\"\n", "test.toml:1:7: child.binry: ", "unknown key"},
        {"[daemon]\nstate_dri = \"/x\"\n",
         "test.toml:2:1: daemon.state_dri: ", "valid keys in [daemon]: state_dir, root_dir"},
        {"[health.extra]\n", "test.toml:1:9: health.extra: ", "valid keys in [health]: kind,"},
        {"[restart]\nlimit = 1\n",
         "test.toml:2:1: restart.limit: ", "valid keys in [restart]: policy,"},
        {"\"a b\" = 1\n", "test.toml:1:1: \"a b\": ", "unknown key"},
        // wrong types
        {"daemon = 5\n", "test.toml:1:10: daemon: ", "expected a table, got integer"},
        {"[[daemon]]\n", "test.toml:1:1: daemon: ", "expected a table, got array"},
        {"[child]\nbinary = 5\n",
         "test.toml:2:10: child.binary: ", "expected a string, got integer"},
        {"[child]\nnew_session = \"yes\"\n",
         "test.toml:2:15: child.new_session: ", "expected a boolean, got string"},
        {"[health]\nfailure_threshold = \"3\"\n",
         "test.toml:2:21: health.failure_threshold: ", "expected an integer, got string"},
        {"[health]\nfailure_threshold = 1.5\n",
         "test.toml:2:21: health.failure_threshold: ", "expected an integer, got float"},
        {"[child]\nargs = \"x\"\n", "test.toml:2:8: child.args: ", "expected an array, got string"},
        {"[child]\nargs = [\"a\", 2]\n",
         "test.toml:2:14: child.args[1]: ", "expected a string, got integer"},
        {"[child]\nenv = { A = 1 }\n",
         "test.toml:2:13: child.env.A: ", "expected a string, got integer"},
        {"[child.env]\nA = true\n",
         "test.toml:2:5: child.env.A: ", "expected a string, got boolean"},
        {"[child]\nenv = []\n", "test.toml:2:7: child.env: ", "expected a table, got array"},
        {"[child]\nconfig = 5\n",
         "test.toml:2:10: child.config: ", "expected a table, got integer"},
        {"[daemon]\nstate_dir = 2024-01-01\n",
         "test.toml:2:13: daemon.state_dir: ", "expected a string, got date"},
        {"[daemon]\nlog_level = 1\n",
         "test.toml:2:13: daemon.log_level: ", "expected a string, got integer"},
        {"[child]\nstop_signal = 15\n",
         "test.toml:2:15: child.stop_signal: ", "expected a string, got integer"},
        // empty strings
        {"[child]\nbinary = \"\"\n", "test.toml:2:10: child.binary: ", "must not be empty"},
        {"[daemon]\nstate_dir = \"\"\n", "test.toml:2:13: daemon.state_dir: ", "must not be empty"},
        {"[health]\naddress = \"\"\n", "test.toml:2:11: health.address: ", "must not be empty"},
        {"[child.env]\n\"A=B\" = \"x\"\n", "test.toml:2:1: child.env.\"A=B\": ", "'='"},
        {"[child]\nconfig_file = \"../x\"\n", "test.toml:2:15: child.config_file: ", "no '/'"},
        // durations
        {"[health]\ninterval = 5\n",
         "test.toml:2:12: health.interval: ", "expected a string, got integer"},
        {"[health]\ninterval = \"5x\"\n",
         "test.toml:2:12: health.interval: ", "invalid duration \"5x\""},
        {"[health]\ninterval = \"1.5ms\"\n",
         "test.toml:2:12: health.interval: ", "invalid duration"},
        {"[health]\ninterval = \"-1s\"\n", "test.toml:2:12: health.interval: ", "invalid duration"},
        {"[health]\ninterval = \"\"\n", "test.toml:2:12: health.interval: ", "invalid duration"},
        {"[health]\ninterval = \"5 parsecs\"\n",
         "test.toml:2:12: health.interval: ", "invalid duration"},
        {"[health]\ndump_wait = \"soon\"\n",
         "test.toml:2:13: health.dump_wait: ", "invalid duration"},
        {"[health]\ninterval = \"0s\"\n",
         "test.toml:2:12: health.interval: ", "must be greater than 0"},
        {"[health]\ntimeout = \"0ms\"\n",
         "test.toml:2:11: health.timeout: ", "must be greater than 0"},
        {"[health]\nstartup_timeout = \"0m\"\n",
         "test.toml:2:19: health.startup_timeout: ", "must be greater than 0"},
        {"[child]\nstop_timeout = \"0s\"\n",
         "test.toml:2:16: child.stop_timeout: ", "must be greater than 0"},
        {"[restart]\nbackoff_initial = \"0s\"\n",
         "test.toml:2:19: restart.backoff_initial: ", "must be greater than 0"},
        {"[restart]\nbackoff_max = \"0s\"\n",
         "test.toml:2:15: restart.backoff_max: ", "must be greater than 0"},
        {"[restart]\nreset_after = \"0h\"\n",
         "test.toml:2:15: restart.reset_after: ", "must be greater than 0"},
        {"[restart]\nstart_limit_interval = \"0s\"\n",
         "test.toml:2:24: restart.start_limit_interval: ", "must be greater than 0"},
        {"[restart]\nbackoff_max = \"10ms\"\n", "test.toml:2:15: restart.backoff_max: ",
         "must be at least backoff_initial (100ms), got 10ms"},
        {"[restart]\nbackoff_initial = \"1m\"\n",
         "test.toml:2:19: restart.backoff_initial: ", "must be at most backoff_max (30s), got 1m"},
        // oom_score_adj
        {"[child]\noom_score_adj = 1001\n",
         "test.toml:2:17: child.oom_score_adj: ", "out of range -1000..1000, got 1001"},
        {"[child]\noom_score_adj = -1001\n",
         "test.toml:2:17: child.oom_score_adj: ", "out of range"},
        {"[child]\noom_score_adj = \"x\"\n", "test.toml:2:17: child.oom_score_adj: ",
         "expected an integer -1000..1000 or \"inherit\", got \"x\""},
        {"[child]\noom_score_adj = \"500\"\n",
         "test.toml:2:17: child.oom_score_adj: ", "or \"inherit\""},
        {"[child]\noom_score_adj = true\n", "test.toml:2:17: child.oom_score_adj: ",
         "expected an integer or \"inherit\", got boolean"},
        // signals
        {"[child]\nstop_signal = \"SIGFOO\"\n",
         "test.toml:2:15: child.stop_signal: ", "unknown signal \"SIGFOO\""},
        {"[child]\nstop_signal = \"\"\n", "test.toml:2:15: child.stop_signal: ", "unknown signal"},
        {"[child]\nstop_signal = \"sigterm\"\n",
         "test.toml:2:15: child.stop_signal: ", "unknown signal"},
        {"[child]\nstop_signal = \"65\"\n",
         "test.toml:2:15: child.stop_signal: ", "unknown signal"},
        {"[health]\ndump_signal = \"USR3\"\n",
         "test.toml:2:15: health.dump_signal: ", "unknown signal \"USR3\""},
        // enums
        {"[daemon]\nlog_level = \"loud\"\n", "test.toml:2:13: daemon.log_level: ",
         "invalid value \"loud\"; expected one of \"trace\", \"debug\", \"info\", \"warn\", "
         "\"error\""},
        {"[child]\noutput = \"file\"\n",
         "test.toml:2:10: child.output: ", "expected one of \"inherit\", \"capture\""},
        {"[health]\nkind = \"smtp\"\n", "test.toml:2:8: health.kind: ",
         "expected one of \"grpc\", \"none\", \"http\", \"tcp\", \"exec\""},
        {"[restart]\npolicy = \"on_failure\"\n", "test.toml:2:10: restart.policy: ",
         "expected one of \"always\", \"on-failure\", \"never\""},
        // integers
        {"[health]\nfailure_threshold = 0\n",
         "test.toml:2:21: health.failure_threshold: ", "must be at least 1, got 0"},
        {"[health]\nfailure_threshold = -3\n",
         "test.toml:2:21: health.failure_threshold: ", "must be at least 1"},
        {"[health]\nfailure_threshold = 99999999999\n",
         "test.toml:2:21: health.failure_threshold: ", "must be at most 2147483647"},
        {"[restart]\nstart_limit_burst = 0\n",
         "test.toml:2:21: restart.start_limit_burst: ", "must be at least 1, got 0"},
        // control_socket_mode
        {"[daemon]\ncontrol_socket_mode = \"0999\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = \"1777\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = \"\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = \"rw-rw----\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = \"-660\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = \"000000000000000000000001000\"\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected an octal mode"},
        {"[daemon]\ncontrol_socket_mode = 0o660\n",
         "test.toml:2:23: daemon.control_socket_mode: ", "expected a string, got integer"},
        // allowed_uids
        {"[daemon]\nallowed_uids = [1, -1]\n",
         "test.toml:2:20: daemon.allowed_uids[1]: ", "expected a uid 0..4294967294, got -1"},
        {"[daemon]\nallowed_uids = [4294967295]\n",
         "test.toml:2:17: daemon.allowed_uids[0]: ", "expected a uid"},
        {"[daemon]\nallowed_uids = [\"1000\"]\n",
         "test.toml:2:17: daemon.allowed_uids[0]: ", "expected an integer, got string"},
        {"[daemon]\nallowed_uids = 1000\n",
         "test.toml:2:16: daemon.allowed_uids: ", "expected an array, got integer"},
        // placeholders
        {"[daemon]\ncontrol_socket = \"${foo}/x.sock\"\n",
         "test.toml:2:18: daemon.control_socket: ",
         "unknown variable ${foo}; known: ${state_dir}, ${root_dir}"},
        {"[health]\naddress = \"unix://${STATE_DIR}/c.sock\"\n",
         "test.toml:2:11: health.address: ", "unknown variable ${STATE_DIR}"},
        {"[child]\nargs = [\"ok\", \"--home=${HOME}\"]\n",
         "test.toml:2:15: child.args[1]: ", "unknown variable ${HOME}"},
        {"[child.config]\nroot = \"${root}/containerd\"\n",
         "test.toml:2:8: child.config.root: ", "unknown variable ${root}"},
        {"[child.config.plugins.\"io.containerd.x\"]\npath = \"${}\"\n",
         "test.toml:2:8: child.config.plugins.\"io.containerd.x\".path: ", "unknown variable ${}"},
        {"[child.config]\na = [[\"${state_dir}\", \"${bad\"]]\n",
         "test.toml:2:23: child.config.a[0][1]: ", "unterminated \"${\""},
        {"[[child.config.list]]\n[[child.config.list]]\nx = \"${nope}\"\n",
         "test.toml:3:5: child.config.list[1].x: ", "unknown variable ${nope}"},
        {"[child.config]\nt = { u = { v = \"${x}\" } }\n",
         "test.toml:2:17: child.config.t.u.v: ", "unknown variable ${x}"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.doc);
        CHECK_THAT(error_of(c.doc), StartsWith(c.prefix) && Contains(c.gist));
    }
}

TEST_CASE("parse_config never throws, whatever the input", "[config]") {
    const std::string nasty[] = {
        std::string("\0\0\0", 3),
        "\xff\xfe\x00garbage",
        std::string(300, '[') + std::string(300, ']'),
        "a = " + std::string(300, '[') + std::string(300, ']'),
        "[child.config]\n" + std::string(200, '[') + "\n",
        "[child]\nbinary = \"\\u0000\"\n",
        "[health]\ninterval = \"99999999999999999999999999h\"\n",
        "[child]\noom_score_adj = -9223372036854775808\n",
        "x = 1e999999\n",
    };
    for (const auto& doc : nasty) {
        CAPTURE(doc);
        CHECK_NOTHROW(parse_config(doc, "test.toml"));
    }
    // Every prefix of a full document: truncated files of every shape.
    std::string full = to_toml(Config{});
    for (size_t n = 0; n <= full.size(); ++n)
        REQUIRE_NOTHROW(parse_config(std::string_view(full).substr(0, n), "test.toml"));
}

TEST_CASE("expand_config replaces ${state_dir} and ${root_dir} where documented", "[config]") {
    Config c = parsed(R"(
[daemon]
state_dir = "/s/${root_dir}"
root_dir = "/r"
control_socket = "${state_dir}/ctl.sock"
[child]
args = ["--root=${root_dir}", "${state_dir}${state_dir}", "$state_dir", "plain"]
[child.config]
root = "${root_dir}/containerd"
list = ["${state_dir}/a", ["${root_dir}/b", 3], { deep = "${state_dir}" }]
number = 7
[child.config.x.y]
z = "${root_dir}:${state_dir}"
[[child.config.tables]]
p = "${root_dir}"
[health]
address = "unix://${state_dir}/c.sock"
)");
    expand_config(c);
    const auto& cfg = c.child.config;
    // The directories themselves are not expanded, and substituted text is not re-expanded.
    CHECK(c.daemon.state_dir == "/s/${root_dir}");
    CHECK(c.daemon.root_dir == "/r");
    CHECK(c.daemon.control_socket == "/s/${root_dir}/ctl.sock");
    CHECK(c.health.address == "unix:///s/${root_dir}/c.sock");
    CHECK(c.child.args == std::vector<std::string>{"--root=/r", "/s/${root_dir}/s/${root_dir}",
                                                   "$state_dir", "plain"});
    CHECK(cfg["root"].value<std::string>() == "/r/containerd");
    CHECK(cfg["list"][0].value<std::string>() == "/s/${root_dir}/a");
    CHECK(cfg["list"][1][0].value<std::string>() == "/r/b");
    CHECK(cfg["list"][1][1].value<int64_t>() == 3);
    CHECK(cfg["list"][2]["deep"].value<std::string>() == "/s/${root_dir}");
    CHECK(cfg["number"].value<int64_t>() == 7);
    CHECK(cfg["x"]["y"]["z"].value<std::string>() == "/r:/s/${root_dir}");
    CHECK(cfg["tables"][0]["p"].value<std::string>() == "/r");
}

TEST_CASE("expand_config on the defaults gives containerd's paths", "[config]") {
    Config c;
    c.daemon.state_dir = "/run/x";
    c.daemon.root_dir = "/var/lib/x";
    expand_config(c);
    CHECK(c.daemon.control_socket == "/run/x/vigild.sock");
    CHECK(c.health.address == "unix:///run/x/containerd.sock");
    CHECK(c.child.config["root"].value<std::string>() == "/var/lib/x/containerd");
    CHECK(c.child.config["state"].value<std::string>() == "/run/x/containerd");
    CHECK(c.child.config["grpc"]["address"].value<std::string>() == "/run/x/containerd.sock");
    // Unknown placeholders (e.g. from a flag) are left as they are.
    c.daemon.control_socket = "${other}/a${state_dir";
    expand_config(c);
    CHECK(c.daemon.control_socket == "${other}/a${state_dir");
}

TEST_CASE("to_toml writes every key and parses back to the same config", "[config]") {
    SECTION("defaults") {
        std::string text = to_toml(Config{});
        INFO(text);
        auto keys = keys_of(toml::parse(text));
        for (const char* key : {"daemon.state_dir",
                                "daemon.root_dir",
                                "daemon.log_level",
                                "daemon.control_socket",
                                "daemon.control_socket_mode",
                                "daemon.control_socket_group",
                                "daemon.allowed_uids",
                                "child.binary",
                                "child.args",
                                "child.config_file",
                                "child.config_flag",
                                "child.log_level_flag",
                                "child.oom_score_adj",
                                "child.stop_signal",
                                "child.stop_timeout",
                                "child.new_session",
                                "child.env",
                                "child.output",
                                "child.config",
                                "health.kind",
                                "health.address",
                                "health.service",
                                "health.interval",
                                "health.timeout",
                                "health.failure_threshold",
                                "health.startup_timeout",
                                "health.dump_signal",
                                "health.dump_wait",
                                "restart.policy",
                                "restart.backoff_initial",
                                "restart.backoff_max",
                                "restart.reset_after",
                                "restart.start_limit_burst",
                                "restart.start_limit_interval"}) {
            CAPTURE(key);
            CHECK(keys.count(key) == 1);
        }
        CHECK_THAT(text, Contains("control_socket_mode = \"0660\"") &&
                             Contains("oom_score_adj = \"inherit\"") &&
                             Contains("stop_signal = \"SIGTERM\"") &&
                             Contains("dump_signal = \"\"") && Contains("interval = \"500ms\"") &&
                             Contains("[child.env]") && Contains("[child.config.grpc]"));
        check_round_trip(Config{});
    }
    SECTION("every value changed, awkward strings and a rich child.config") {
        Config c = parsed(R"(
[child.config]
float = 0.1
big = 1e300
neg = -0.0
min = -9223372036854775808
hex = 0xff
when = 1979-05-27T07:32:00-08:00
day = 1979-05-27
time = 07:32:00
multi = """two
lines"""
literal = 'C:\path'
"dotted.key" = "v"
inline = { a = 1, b = { c = [1, 2] } }
mixed = [1, "two", [3.5], { four = 4 }]
[child.config.empty]
[[child.config.servers]]
name = "a"
[[child.config.servers]]
name = "b"
[child.config.servers.opts]
x = true
)");
        c.daemon.state_dir = "/state \"dir\"";
        c.daemon.root_dir = "/root\\dir";
        c.daemon.log_level = LogLevel::error;
        c.daemon.control_socket = "/tmp/ctl\n.sock";
        c.daemon.control_socket_mode = 0600;
        c.daemon.control_socket_group = "gr\xc3\xbcp";
        c.daemon.allowed_uids = {0, 1000, 4294967294u};
        c.child.binary = "/bin/with space";
        c.child.args = {"a", "", "'q'", "\"dq\"", "tab\there"};
        c.child.config_file = "";
        c.child.config_flag = "-c";
        c.child.log_level_flag = "";
        c.child.oom_score_adj = OomScore{false, -1000};
        c.child.stop_signal = SIGRTMIN + 3;
        c.child.stop_timeout = 1500ms;
        c.child.new_session = false;
        c.child.env = {{"A", "1"}, {"WITH SPACE", "x"}, {"Q\"", "\\"}, {"E", ""}};
        c.child.output = OutputMode::capture;
        c.health.kind = HealthKind::none;
        c.health.address = "";
        c.health.service = "svc";
        c.health.interval = 90s;
        c.health.timeout = 1h;
        c.health.failure_threshold = 7;
        c.health.startup_timeout = 3601s;
        c.health.dump_signal = SIGUSR1;
        c.health.dump_wait = 0ms;
        c.restart.policy = RestartPolicy::never;
        c.restart.backoff_initial = 1ms;
        c.restart.backoff_max = 24h;
        c.restart.reset_after = 5min;
        c.restart.start_limit_burst = 1;
        c.restart.start_limit_interval = 61s;
        check_round_trip(c);
    }
    SECTION("child.config given as an inline table, or holding only tables, or empty") {
        check_round_trip(parsed("[child]\nconfig = { version = 2, grpc = { address = \"a\" } }\n"));
        check_round_trip(parsed("[child.config.a.b]\nc = 1\n"));
        check_round_trip(parsed("[child]\nconfig = {}\nenv = { X = \"y\" }\n"));
    }
    SECTION("an expanded config") {
        Config c;
        expand_config(c);
        check_round_trip(c);
    }
}

TEST_CASE("load_config reads a file and names it in messages", "[config]") {
    SECTION("missing file") {
        auto result = load_config("/nonexistent/vigil/vigild.toml");
        REQUIRE(std::holds_alternative<ConfigError>(result));
        CHECK(std::get<ConfigError>(result).message ==
              "/nonexistent/vigil/vigild.toml: cannot read: No such file or directory");
    }
    SECTION("a directory") {
        auto result = load_config("/");
        REQUIRE(std::holds_alternative<ConfigError>(result));
        CHECK(std::get<ConfigError>(result).message ==
              "/: not a regular file (a directory); give the path of a TOML file");
    }
    SECTION("a file") {
        char path[] = "/tmp/vigil-test-config-XXXXXX";
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        close(fd);
        std::ofstream(path) << "[child]\nbinary = \"fake\"\n";
        auto result = load_config(path);
        REQUIRE(std::holds_alternative<Config>(result));
        CHECK(std::get<Config>(result).source == path);
        CHECK(std::get<Config>(result).child.binary == "fake");

        std::ofstream(path) << "[child]\nbinary = 1\n";
        result = load_config(path);
        REQUIRE(std::holds_alternative<ConfigError>(result));
        CHECK(std::get<ConfigError>(result).message ==
              std::string(path) + ":2:10: child.binary: expected a string, got integer");
        unlink(path);
    }
}

TEST_CASE("the shipped config/vigild.toml loads and holds every default", "[config]") {
    const std::string path = (project_dir / "config" / "vigild.toml").string();
    auto result = load_config(path);
    if (const auto* e = std::get_if<ConfigError>(&result))
        FAIL(e->message);
    const Config& shipped = std::get<Config>(result);
    CHECK(shipped.source == path);
    check_same(shipped, Config{});
    // Every key is written out, not left to its default.
    CHECK(keys_of(toml::parse_file(path)) == keys_of(toml::parse(to_toml(Config{}))));
    check_round_trip(shipped);
}

// ---- Bounds: every input path of the config (docs/configuration.md, "Limits") ----

namespace {

std::string repeated(std::string_view unit, int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
        s += unit;
    return s;
}

// A temp file removed at the end of the scope.
struct TempPath {
    std::string path;
    TempPath() {
        char tmpl[] = "/tmp/vigil-test-bounds-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = tmpl;
    }
    ~TempPath() { unlink(path.c_str()); }
};

std::string expanded_error(const Config& c, const Flags& flags = {}) {
    auto result = apply_flags(c, flags);
    const auto* e = std::get_if<ConfigError>(&result);
    return e != nullptr ? e->message : "(no error)";
}

} // namespace

TEST_CASE("nesting deeper than kMaxConfigDepth is refused before the parser recurses",
          "[config][bounds]") {
    constexpr int deep = 100'000;
    struct Case {
        std::string doc;
        std::string prefix; // FILE:LINE:COL of the place that goes too deep
    };
    const Case cases[] = {
        // The reported crashes: a table header and a dotted key 100,000 keys deep.
        {"[child.config" + repeated(".k", deep) + "]\nx = 1\n", "test.toml:1:1: "},
        {"[child.config]\nk" + repeated(".k", deep) + " = 1\n", "test.toml:2:1: "},
        {"[[child.config" + repeated(".k", deep) + "]]\n", "test.toml:1:1: "},
        // Arrays and inline tables, with and without dotted keys inside them.
        {"[child.config]\nx = " + repeated("[", deep) + repeated("]", deep) + "\n",
         "test.toml:2:35: "},
        {"[child.config]\nx = " + repeated("{a=", deep) + "1" + repeated("}", deep) + "\n",
         "test.toml:2:"},
        {"[child.config]\nx = { a" + repeated(".a", deep) + " = 1 }\n", "test.toml:2:7: "},
        {"[child.config]\nx = [ { a = [ { b" + repeated(".b", 40) + " = 1 } ] } ]\n",
         "test.toml:2:17: "},
        // Many lines: arrays may span lines and hold comments.
        {"[child.config]\nx = [\n" + repeated("[ # comment\n", 40) + repeated("]\n", 40) + "]\n",
         "test.toml:32:1: "},
    };
    for (const auto& c : cases) {
        CAPTURE(c.doc.substr(0, 80));
        const std::string error = error_of(c.doc);
        CHECK_THAT(error, StartsWith(c.prefix) && Contains("nested deeper than 32 levels"));
    }
}

TEST_CASE("nesting up to kMaxConfigDepth is accepted and only real nesting counts",
          "[config][bounds]") {
    // [child.config.k1...k29] is at depth 31, its x at 32.
    std::string header = "[child.config" + repeated(".k", 29) + "]\n";
    parsed(header + "x = 1\n");
    CHECK_THAT(error_of(header + "y.z = 1\n"), StartsWith("test.toml:2:1: nested deeper than 32"));
    // [child.config] x = [[...]]: the array x is at 3, 29 arrays nested in it reach 32.
    parsed("[child.config]\nx = " + repeated("[", 30) + repeated("]", 30) + "\n");
    CHECK_THAT(error_of("[child.config]\nx = " + repeated("[", 31) + repeated("]", 31) + "\n"),
               StartsWith("test.toml:2:35: nested deeper than"));
    // Brackets, braces and dots inside strings and comments are not nesting.
    const std::string noise = repeated("[{.", 100);
    Config strings =
        parsed("[child.config] # " + noise + "\n" + "a = \"" + noise + "\" # " + noise + "\n" +
               "b = '" + noise + "'\n" + "c = \"\"\"\n" + noise + "\n\"\"\"\n" + "d = '''\n" +
               noise + "\n'''\n" + "e = [\"]\", '[', \"\\\"[\", 1.5, 2024-01-01T00:00:00Z]\n" +
               "\"f.g.h\" = { \"i.j\" = \"{\" }\n");
    CHECK(strings.child.config["a"].value<std::string>() == noise);
    CHECK(strings.child.config["f.g.h"]["i.j"].value<std::string>() == "{");
}

TEST_CASE("keys longer than kMaxKeyLength are refused", "[config][bounds]") {
    parsed("[child.config]\n" + std::string(kMaxKeyLength, 'k') + " = 1\n");
    parsed("[child.config]\n\"" + std::string(kMaxKeyLength, 'k') + "\" = 1\n");
    CHECK_THAT(error_of("[child.config]\n" + std::string(kMaxKeyLength + 1, 'k') + " = 1\n"),
               StartsWith("test.toml:2:1: key longer than 1024 bytes (1025 bytes)"));
    CHECK_THAT(error_of("[child.config.\"" + std::string(100'000, 'k') + "\"]\n"),
               StartsWith("test.toml:1:15: key longer than 1024 bytes"));
}

TEST_CASE("a config larger than kMaxConfigSize is refused", "[config][bounds]") {
    std::string big = "[child.config]\nx = \"" + std::string(kMaxConfigSize, 'x') + "\"\n";
    CHECK(error_of(big) == fmt::format("test.toml: {} bytes, more than the 1048576 bytes a "
                                       "config may have",
                                       big.size()));
    TempPath file;
    std::ofstream(file.path) << big;
    auto result = load_config(file.path);
    REQUIRE(std::holds_alternative<ConfigError>(result));
    CHECK(std::get<ConfigError>(result).message ==
          fmt::format("{}: {} bytes, more than the 1048576 bytes a config may have", file.path,
                      big.size()));
}

TEST_CASE("load_config reads regular files only and never blocks", "[config][bounds]") {
    SECTION("a FIFO nobody writes to") {
        TempPath file;
        unlink(file.path.c_str());
        REQUIRE(mkfifo(file.path.c_str(), 0600) == 0);
        auto result = load_config(file.path); // a blocking open would never return
        REQUIRE(std::holds_alternative<ConfigError>(result));
        CHECK(std::get<ConfigError>(result).message ==
              file.path + ": not a regular file (a FIFO); give the path of a TOML file");
    }
    SECTION("an endless device") {
        auto result = load_config("/dev/zero");
        REQUIRE(std::holds_alternative<ConfigError>(result));
        CHECK(std::get<ConfigError>(result).message ==
              "/dev/zero: not a regular file (a character device); give the path of a TOML "
              "file");
    }
    SECTION("a symlink to a regular file is followed") {
        TempPath file;
        std::ofstream(file.path) << "[child]\nbinary = \"via-link\"\n";
        const std::string link = file.path + ".link";
        REQUIRE(symlink(file.path.c_str(), link.c_str()) == 0);
        auto result = load_config(link);
        unlink(link.c_str());
        REQUIRE(std::holds_alternative<Config>(result));
        CHECK(std::get<Config>(result).child.binary == "via-link");
    }
}

TEST_CASE("strings that become paths or argv or environment are bounded", "[config][bounds]") {
    const std::string path(kMaxPathLength + 1, 'p');
    const std::string arg(kMaxArgLength + 1, 'a');
    const std::string name(kMaxNameLength + 1, 'n');
    struct Case {
        std::string doc, prefix, gist;
    };
    const Case cases[] = {
        {"[daemon]\nstate_dir = \"/" + path + "\"\n",
         "test.toml:2:13: daemon.state_dir: ", "4097 bytes, longer than the 4095 allowed"},
        {"[daemon]\nroot_dir = \"" + path + "\"\n",
         "test.toml:2:12: daemon.root_dir: ", "longer than the 4095 allowed"},
        {"[daemon]\ncontrol_socket = \"" + path + "\"\n",
         "test.toml:2:18: daemon.control_socket: ", "longer than the 4095 allowed"},
        {"[daemon]\ncontrol_socket_group = \"" + name + "\"\n",
         "test.toml:2:24: daemon.control_socket_group: ", "longer than the 255 allowed"},
        {"[child]\nbinary = \"" + path + "\"\n",
         "test.toml:2:10: child.binary: ", "longer than the 4095 allowed"},
        {"[child]\nargs = [\"x\", \"" + arg + "\"]\n",
         "test.toml:2:14: child.args[1]: ", "131072 bytes, longer than the 131071 allowed"},
        {"[child]\nconfig_file = \"" + name + "\"\n",
         "test.toml:2:15: child.config_file: ", "longer than the 255 allowed"},
        {"[child]\nconfig_flag = \"" + arg + "\"\n",
         "test.toml:2:15: child.config_flag: ", "longer than the 131071 allowed"},
        {"[child.env]\nA = \"" + std::string(kMaxArgLength - 1, 'v') + "\"\n",
         "test.toml:2:5: child.env.A: ", "NAME=value is 131072 bytes"},
        {"[health]\naddress = \"unix://" + path + "\"\n",
         "test.toml:2:11: health.address: ", "longer than the 4095 allowed"},
        {"[health]\nservice = \"" + name + "\"\n",
         "test.toml:2:11: health.service: ", "longer than the 255 allowed"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.doc.substr(0, 60));
        CHECK_THAT(error_of(c.doc), StartsWith(c.prefix) && Contains(c.gist));
    }
    // At the bounds: accepted.
    Config c = parsed("[daemon]\nstate_dir = \"" + std::string(kMaxPathLength, 'p') +
                      "\"\n[child]\nargs = [\"" + std::string(kMaxArgLength, 'a') + "\"]\n");
    CHECK(c.daemon.state_dir.size() == kMaxPathLength);
}

TEST_CASE("a 100 KB signal name or value is a short and clean config error", "[config][bounds]") {
    const std::string huge(100 * 1024, 'X');
    CHECK_FALSE(parse_signal(huge).has_value());
    CHECK_FALSE(parse_signal("SIG" + huge).has_value());
    for (const std::string& doc :
         {"[child]\nstop_signal = \"SIG" + huge + "\"\n",
          "[health]\ndump_signal = \"" + huge + "\"\n", "[health]\ninterval = \"" + huge + "\"\n",
          "[restart]\npolicy = \"" + huge + "\"\n",
          "[daemon]\ncontrol_socket_mode = \"" + huge + "\"\n"}) {
        const std::string error = error_of(doc);
        CAPTURE(doc.substr(0, 40), error);
        CHECK_THAT(error, StartsWith("test.toml:2:") && Contains("... (10240"));
        CHECK(error.size() < 400);
    }
}

TEST_CASE("grpc_target_problem takes gRPC's target forms and refuses a bare path",
          "[config][bounds]") {
    for (const char* ok :
         {"unix:/run/c.sock", "unix:///run/c.sock", "unix-abstract:containerd",
          "dns:localhost:50051", "dns:///localhost:50051", "dns://8.8.8.8:53/example.com:443",
          "dns:example.com", "ipv4:127.0.0.1:50051", "ipv4:10.0.0.1,10.0.0.2:80",
          "ipv6:[::1]:50051", "ipv6:::1", "localhost:50051", "127.0.0.1:9000", "[::1]:443",
          "my-host.example_1.com:1"}) {
        CAPTURE(ok);
        CHECK(grpc_target_problem(ok) == std::nullopt);
    }
    struct Case {
        const char* target;
        const char* gist;
    };
    const Case bad[] = {
        {"/run/containerd/containerd.sock", "write unix://PATH"},
        {"run/c.sock", "write unix://PATH"},
        {"unix://run/c.sock", "unix:// takes an absolute path"},
        {"unix:c.sock", "needs an absolute path"},
        {"localhost", "a port is needed"},
        {"localhost:0", "not a port"},
        {"localhost:99999", "not a port"},
        {"host name:80", "not a host name"},
        {"http://x:80", "write unix://PATH"},
        {"ipv4:300.1.1.1", "not an IPv4 address"},
        {"ipv6:[::1", "lacks its ']'"},
        {"dns://x", "must be followed by /HOST"},
        {"", "empty"},
    };
    for (const auto& c : bad) {
        CAPTURE(c.target);
        auto problem = grpc_target_problem(c.target);
        REQUIRE(problem);
        CHECK_THAT(*problem, Contains(c.gist));
    }
    const std::string long_path = "unix:///" + std::string(kMaxUnixSocketPath, 's');
    REQUIRE(grpc_target_problem(long_path));
    CHECK_THAT(*grpc_target_problem(long_path), Contains("longer than the 107"));
}

TEST_CASE("the expanded config is checked: health address and lengths and rendered size",
          "[config][bounds]") {
    SECTION("a bare path as the grpc health address, from the file or the flag") {
        Config c = parsed("[health]\naddress = \"${state_dir}/containerd.sock\"\n");
        CHECK_THAT(expanded_error(c), StartsWith("test.toml: health.address: \"/run/vigil/"
                                                 "containerd.sock\": a path is not a gRPC "
                                                 "target") &&
                                          Contains("write unix://PATH"));
        Flags flags;
        flags.health_address = "/run/x.sock";
        CHECK_THAT(expanded_error(Config{}, flags),
                   StartsWith("--health-address: \"/run/x.sock\"") &&
                       Contains("write unix://PATH"));
        // Not checked when health checks are off.
        flags.no_health = true;
        CHECK(expanded_error(Config{}, flags) == "(no error)");
        CHECK(expanded_error(Config{}) == "(no error)");
    }
    SECTION("a relative state_dir makes the default address invalid") {
        Flags flags;
        flags.state_dir = "run";
        CHECK_THAT(expanded_error(Config{}, flags), Contains("unix:// takes an absolute path"));
    }
    SECTION("expansion that makes an argument too long") {
        Flags flags;
        flags.state_dir = "/" + std::string(kMaxPathLength - 1, 's');
        Config c = parsed("[daemon]\ncontrol_socket = \"/run/c.sock\"\n[child]\nargs = [\"" +
                          repeated("${state_dir}", 40) + "\"]\n[health]\nkind = \"none\"\n");
        CHECK_THAT(expanded_error(c, flags),
                   StartsWith("test.toml: child.args[0]: expands to 163800 bytes"));
    }
    SECTION("[child.config] whose rendering would blow up") {
        // 1 MiB of text whose 30-deep, 28 KiB table path is repeated by every [header].
        std::string doc = "[child.config";
        for (int i = 0; i < 28; ++i)
            doc += "." + std::string(kMaxKeyLength, 'k');
        doc += "]\n";
        for (int i = 0; doc.size() < kMaxConfigSize - 32; ++i)
            doc += fmt::format("t{}.x = 1\n", i);
        Config c = parsed(doc);
        CHECK_THAT(expanded_error(c),
                   StartsWith("test.toml: child.config: would be written as more than"));
        // The same kind of tables, close to the root: fine.
        std::string flat = "[child.config]\n";
        for (int i = 0; flat.size() < kMaxConfigSize / 2; ++i)
            flat += fmt::format("t{}.x = 1\n", i);
        CHECK(expanded_error(parsed(flat)) == "(no error)");
    }
    SECTION("flags longer than a path are bad flags") {
        const std::string long_dir = "--state-dir=/" + std::string(kMaxPathLength, 'd');
        const char* argv[] = {"vigild", long_dir.c_str()};
        auto parsed_flags = parse_flags(2, argv);
        REQUIRE(std::holds_alternative<FlagsError>(parsed_flags));
        CHECK_THAT(std::get<FlagsError>(parsed_flags).message, Contains("at most 4095"));
    }
}

TEST_CASE("non-ASCII text outside strings and comments is refused before toml++ sees it",
          "[config][bounds]") {
    // toml++ 3.3 reaches __builtin_unreachable() classifying some code points outside
    // strings (found by fuzz_config under UBSan); TOML allows them only in strings and
    // comments, so the pre-scan refuses the rest with a position.
    const std::pair<std::string, std::string> cases[] = {
        {"[child.config]\nx\xd2\x8d = 1\n", "test.toml:2:2: "},
        {"[child.config]\nx = 1 \xe3\x80\x81\n", "test.toml:2:7: "},
        {"[c.q\xd2\x8d\xd1\x8c]\nx = 0\n", "test.toml:1:5: "},
        {"[child.config]\nx = [1, \xc2\xa0 2]\n", "test.toml:2:9: "},
    };
    for (const auto& [doc, prefix] : cases) {
        CAPTURE(doc);
        CHECK_THAT(error_of(doc),
                   StartsWith(prefix) && Contains("non-ASCII character outside a string"));
    }
    // In strings, comments and after a byte order mark: fine.
    Config c = parsed("\xEF\xBB\xBF# \xd2\x8d comment\n[child.config] # \xe3\x80\x81\n"
                      "\"k\xd2\x8d\" = \"v\xd2\x8d\" # \xc2\xa0\n"
                      "m = '''\n\xd2\x8d\n'''\n");
    CHECK(c.child.config["k\xd2\x8d"].value<std::string>() == "v\xd2\x8d");
}

TEST_CASE("the pre-scan follows date-times written with a space", "[config][bounds]") {
    // A date-time may have a space for its 'T'; the scan must not lose its place there,
    // or nesting after it would go uncounted.
    Config c = parsed("[child.config]\nd = [1979-05-27 07:32:00Z, 1979-05-27]\n"
                      "t = { a = 1979-05-27 07:32:00Z }\n");
    CHECK(c.child.config["d"].as_array()->size() == 2);
    CHECK_THAT(error_of("[child.config]\nd = [1979-05-27 07:32:00Z,\n" + repeated("[", 40) +
                        repeated("]", 40) + "]\n"),
               StartsWith("test.toml:3:") && Contains("nested deeper than"));
}

TEST_CASE("health kinds: http and tcp take an address, exec a command", "[config][health_kinds]") {
    auto c = parsed("[health]\nkind = \"http\"\naddress = \"http://127.0.0.1:8080/healthz\"\n");
    CHECK(c.health.kind == HealthKind::http);
    auto ep = parse_health_endpoint(HealthKind::http, c.health.address);
    REQUIRE(ep);
    CHECK(ep->host == "127.0.0.1");
    CHECK(ep->port == 8080);
    CHECK(ep->path == "/healthz");
    CHECK(parse_health_endpoint(HealthKind::http, "http://[::1]:80")->path == "/");
    CHECK(parse_health_endpoint(HealthKind::http, "http://[::1]:80")->host == "::1");
    CHECK(parse_health_endpoint(HealthKind::tcp, "db.local:5432")->host == "db.local");
    for (const char* bad : {"127.0.0.1:8080", "https://x:1/", "http://x/", "http://:80/",
                            "http://x:0/", "http://x:70000/", "http://x:80/a b"})
        CHECK_FALSE(parse_health_endpoint(HealthKind::http, bad));
    for (const char* bad : {"x", ":1", "x:", "x:y", "http://x:1"})
        CHECK_FALSE(parse_health_endpoint(HealthKind::tcp, bad));

    CHECK_THAT(error_of("[health]\nkind = \"http\"\n"), Contains("needs an address"));
    CHECK_THAT(error_of("[health]\nkind = \"tcp\"\n"), Contains("\"HOST:PORT\""));
    CHECK_THAT(error_of("[health]\nkind = \"exec\"\n"), Contains("needs command = "));
    CHECK_THAT(error_of("[health]\ncommand = [\"true\"]\n"), Contains("only kind \"exec\""));
    auto e =
        parsed("[health]\nkind = \"exec\"\ncommand = [\"test\", \"-e\", \"${state_dir}/ok\"]\n");
    CHECK(e.health.command.size() == 3);
    CHECK_THAT(to_toml(e), Contains("command = [\"test\", \"-e\", \"${state_dir}/ok\"]"));
    check_round_trip(e);
}
