// The child's execution environment: limit values, env files, and how they combine.
#include "vigil/config.hpp"
#include "vigil/env_file.hpp"
#include "vigil/exec_env.hpp"
#include "vigil/limits.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace vigil;

TEST_CASE("limit values: integer, infinity, SOFT:HARD, size suffixes", "[unit]") {
    struct Row {
        const char* name;
        const char* text;
        rlim_t soft, hard;
    };
    const rlim_t inf = RLIM_INFINITY;
    const Row good[] = {
        {"nofile", "1024", 1024, 1024},
        {"nofile", "1024:4096", 1024, 4096},
        {"nofile", "0", 0, 0},
        {"core", "infinity", inf, inf},
        {"core", "0:infinity", 0, inf},
        {"stack", "8M:infinity", 8u << 20, inf},
        {"memlock", "64K", 64u << 10, 64u << 10},
        {"as", "2G", 2ull << 30, 2ull << 30},
        {"fsize", "1T", 1ull << 40, 1ull << 40},
        {"nproc", "infinity:infinity", inf, inf},
    };
    for (const auto& r : good) {
        INFO(r.name << " = " << r.text);
        auto v = parse_rlimit(*rlimit_resource(r.name), r.text);
        REQUIRE(v.ok());
        CHECK(v->soft == r.soft);
        CHECK(v->hard == r.hard);
        // What is printed parses back to the same value.
        auto back = parse_rlimit(*rlimit_resource(r.name), format_rlimit(*v));
        REQUIRE(back.ok());
        CHECK(*back == *v);
    }
    struct Bad {
        const char* name;
        const char* text;
        const char* error;
    };
    const Bad bad[] = {
        {"nofile", "", "not a number"},
        {"nofile", "lots", "not a number"},
        {"nofile", "-1", "not a number"},
        {"nofile", "4096:1024", "soft limit 4096 is above the hard limit 1024"},
        {"nofile", "1K", "nofile takes no unit suffix"},
        {"stack", "8X", "unknown suffix 'X'"},
        {"nofile", "1024:", "not a number"},
        {"as", "99999999999T", "too large"},
        {"nofile", "18446744073709551615", "too large"},
    };
    for (const auto& r : bad) {
        INFO(r.name << " = " << r.text);
        auto v = parse_rlimit(*rlimit_resource(r.name), r.text);
        REQUIRE_FALSE(v.ok());
        CHECK(v.error().message().find(r.error) != std::string::npos);
    }
    CHECK_FALSE(rlimit_from_integer(-5).ok());
    CHECK(rlimit_from_integer(5)->soft == 5);
    CHECK_FALSE(rlimit_resource("files"));
    CHECK(rlimit_names().size() == 16);
    CHECK(rlimit_name(RLIMIT_NOFILE, true) == "RLIMIT_NOFILE");
}

TEST_CASE("env files: systemd's EnvironmentFile syntax", "[unit]") {
    struct Row {
        const char* text;
        EnvEntries want;
    };
    const Row good[] = {
        {"A=1\nB=two words\n", {{"A", "1"}, {"B", "two words"}}},
        {"# comment\n; also\n\n   \nA=1", {{"A", "1"}}},
        {"  A = spaced  \t\n", {{"A", "spaced"}}},
        {"A='single $HOME \\n'\n", {{"A", "single $HOME \\n"}}},
        {"A=\"double \\\"q\\\" \\\\ \\$ \\` x\"\n", {{"A", "double \"q\" \\ $ ` x"}}},
        {"A=\"spans\nlines\"\nB=2\n", {{"A", "spans\nlines"}, {"B", "2"}}},
        {"A=cont\\\ninued\n", {{"A", "continued"}}},
        {"A=esc\\ aped\\#\n", {{"A", "esc aped#"}}},
        {"A=mixed'q'\"d\"u\n", {{"A", "mixedqdu"}}},
        {"A=\nB=\"\"\n", {{"A", ""}, {"B", ""}}},
        {"A=1\r\nB=2\r\n", {{"A", "1"}, {"B", "2"}}},
        {"A=value # not a comment\n", {{"A", "value # not a comment"}}},
        {"_x9=y", {{"_x9", "y"}}},
        {"A=1\nA=2\n", {{"A", "1"}, {"A", "2"}}},
    };
    for (const auto& r : good) {
        INFO(r.text);
        auto got = parse_env_file(r.text, "f");
        REQUIRE(got.ok());
        CHECK(*got == r.want);
    }
    struct Bad {
        const char* text;
        const char* error;
    };
    const Bad bad[] = {
        {"no equals\n", "f:1: expected KEY=VALUE"},
        {"A=1\n9A=2\n", "f:2: expected KEY=VALUE"},
        {"A-B=1\n", "f:1: expected KEY=VALUE"},
        {"=1\n", "f:1: expected KEY=VALUE"},
        {"A=1\nB='open\n", "f:2: B: unterminated single quote"},
        {"A=\"open\n", "f:1: A: unterminated double quote"},
        {"export A=1\n", "f:1: expected KEY=VALUE"},
    };
    for (const auto& r : bad) {
        INFO(r.text);
        auto got = parse_env_file(r.text, "f");
        REQUIRE_FALSE(got.ok());
        CHECK(got.error().message().find(r.error) != std::string::npos);
    }
}

TEST_CASE("prepare_exec_env: precedence, scrub last, optional files, user variables", "[unit]") {
    char t[] = "/tmp/vigil-env.XXXXXX";
    const std::string dir = ::mkdtemp(t);
    auto write = [](const std::string& p, const std::string& text) { std::ofstream(p) << text; };
    write(dir + "/a.env", "FROM_A=a\nSHARED=a\nNOTIFY_SOCKET=/run/x\nWATCHDOG_USEC=5\n");
    write(dir + "/b.env", "SHARED=b\nFROM_B='b b'\n");
    ::setenv("VIGIL_UNIT_INHERITED", "vigild", 1);
    ::setenv("SHARED", "vigild", 1);
    ::setenv("VIGIL_SPAWN_TOKEN", "not-for-the-child", 1);

    ChildConfig c;
    c.env_files = {dir + "/a.env", "-" + dir + "/missing.env", dir + "/b.env"};
    c.env = {{"SHARED", "child.env"}, {"LISTEN_FDS", "3"}};
    auto has = [](const ExecEnv& e, const std::string& kv) {
        return std::find(e.env.begin(), e.env.end(), kv) != e.env.end();
    };
    auto starts = [](const ExecEnv& e, const std::string& name) {
        return std::any_of(e.env.begin(), e.env.end(),
                           [&](const std::string& kv) { return kv.rfind(name + "=", 0) == 0; });
    };
    SECTION("inherited, then files in order, then [child.env]; the scrub is last") {
        auto e = prepare_exec_env(c);
        REQUIRE(e.ok());
        CHECK(has(*e, "VIGIL_UNIT_INHERITED=vigild"));
        CHECK(has(*e, "FROM_A=a"));
        CHECK(has(*e, "FROM_B=b b"));
        CHECK(has(*e, "SHARED=child.env"));
        CHECK_FALSE(starts(*e, "NOTIFY_SOCKET"));
        CHECK_FALSE(starts(*e, "WATCHDOG_USEC"));
        CHECK_FALSE(starts(*e, "LISTEN_FDS"));
        CHECK_FALSE(starts(*e, "VIGIL_SPAWN_TOKEN"));
        CHECK_FALSE(e->uid);
        CHECK_FALSE(e->groups);
    }
    SECTION("inherit_env = false starts empty") {
        c.inherit_env = false;
        c.env.clear();
        auto e = prepare_exec_env(c);
        REQUIRE(e.ok());
        CHECK_FALSE(starts(*e, "VIGIL_UNIT_INHERITED"));
        CHECK_FALSE(starts(*e, "PATH"));
        CHECK(has(*e, "SHARED=b"));
        CHECK(e->env.size() == 3); // FROM_A, FROM_B, SHARED
    }
    SECTION("a missing file that is not optional fails, naming it") {
        c.env_files.push_back(dir + "/absent.env");
        auto e = prepare_exec_env(c);
        REQUIRE_FALSE(e.ok());
        CHECK(e.error().message().find(dir + "/absent.env") != std::string::npos);
    }
    SECTION("a user brings its name, home and groups") {
        c.user = "nobody";
        c.env_files.clear();
        auto e = prepare_exec_env(c);
        REQUIRE(e.ok());
        CHECK(e->uid == 65534u);
        CHECK(e->gid == 65534u);
        REQUIRE(e->groups);
        CHECK(*e->groups == std::vector<gid_t>{65534});
        CHECK(has(*e, "USER=nobody"));
        CHECK(has(*e, "HOME=/nonexistent"));
        CHECK(e->user_name == "nobody (65534)");
    }
    SECTION("unknown users and groups are errors") {
        c.user = "no-such-user-vigil";
        CHECK_FALSE(prepare_exec_env(c).ok());
        c.user = "";
        c.group = "no-such-group-vigil";
        CHECK_FALSE(prepare_exec_env(c).ok());
    }
    ::unsetenv("VIGIL_UNIT_INHERITED");
    ::unsetenv("SHARED");
    ::unsetenv("VIGIL_SPAWN_TOKEN");
    std::filesystem::remove_all(dir);
}

TEST_CASE("config: [child] execution keys and [child.limits], errors at FILE:LINE:COL", "[unit]") {
    auto parse = [](const std::string& text) { return parse_config(text, "t.toml"); };
    auto ok = parse(R"([child]
user = "nobody"
group = "nogroup"
supplementary_groups = ["daemon", "65534"]
working_directory = "/srv"
umask = "0027"
env_files = ["/etc/default/x", "-/etc/default/y"]
inherit_env = false
no_new_privileges = true
[child.limits]
nofile = "1024:4096"
core = "infinity"
nproc = 512
stack = "8M"
)");
    REQUIRE(std::holds_alternative<Config>(ok));
    const auto& c = std::get<Config>(ok).child;
    CHECK(c.user == "nobody");
    CHECK(c.group == "nogroup");
    CHECK(c.supplementary_groups == std::vector<std::string>{"daemon", "65534"});
    CHECK(c.working_directory == "/srv");
    CHECK(c.umask == 027);
    CHECK(c.env_files.size() == 2);
    CHECK_FALSE(c.inherit_env);
    CHECK(c.no_new_privileges);
    // In DESIGN's order, whatever the file's order.
    REQUIRE(c.limits.size() == 4);
    CHECK(c.limits[0].resource == RLIMIT_CORE);
    CHECK(c.limits[1].resource == RLIMIT_NOFILE);
    CHECK(c.limits[1].value == RLimitValue{1024, 4096});
    CHECK(c.limits[2].value == RLimitValue{512, 512});
    CHECK(c.limits[3].value.soft == (8u << 20));
    // --check-config prints every key, and what it prints loads again to the same.
    const std::string toml = to_toml(std::get<Config>(ok));
    for (auto key : {"user = ", "group = ", "supplementary_groups = ", "working_directory = ",
                     "umask = \"0027\"", "env_files = ", "inherit_env = false",
                     "no_new_privileges = true", "[child.limits]", "nofile = \"1024:4096\""})
        CHECK(toml.find(key) != std::string::npos);
    auto again = parse(toml);
    REQUIRE(std::holds_alternative<Config>(again));
    CHECK(std::get<Config>(again).child.limits == c.limits);

    struct Bad {
        std::string text;
        const char* error;
    };
    const Bad bad[] = {
        {"[child]\nuser = \"no-such-user-vigil\"\n",
         "t.toml:2:8: child.user: no such user: no-such-user-vigil"},
        {"[child]\ngroup = \"no-such-group-vigil\"\n", "t.toml:2:9: child.group: no such group"},
        {"[child]\nsupplementary_groups = [\"daemon\", \"nope-vigil\"]\n",
         "t.toml:2:35: child.supplementary_groups[1]: no such group"},
        {"[child]\nworking_directory = \"srv\"\n", "child.working_directory: must be an absolute"},
        {"[child]\numask = \"0999\"\n", "child.umask: expected an octal mask"},
        {"[child]\numask = 22\n", "child.umask: expected a string"},
        {"[child]\nenv_files = [\"relative.env\"]\n", "child.env_files[0]: must be an absolute"},
        {"[child.limits]\nfiles = 5\n", "t.toml:2:1: child.limits.files: unknown limit"},
        {"[child.limits]\nnofile = \"4096:1024\"\n",
         "t.toml:2:10: child.limits.nofile: soft limit 4096 is above the hard limit 1024"},
        {"[child.limits]\nnofile = -1\n", "child.limits.nofile: must not be negative"},
        {"[child.limits]\nnofile = true\n", "child.limits.nofile: expected an integer"},
    };
    for (const auto& r : bad) {
        INFO(r.text);
        auto got = parse(r.text);
        REQUIRE(std::holds_alternative<ConfigError>(got));
        CHECK(std::get<ConfigError>(got).message.find(r.error) != std::string::npos);
        INFO(std::get<ConfigError>(got).message);
    }
}
