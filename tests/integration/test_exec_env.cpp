// The child's execution environment through the real vigild (issue 8): user, groups,
// limits, cwd, umask, no_new_privileges and env files, read back from the child's /proc.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

// The value of "Key:" in /proc/PID/status, whitespace folded to single spaces.
std::string status_field(pid_t pid, const std::string& key) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) != 0)
            continue;
        std::istringstream v(line.substr(key.size() + 1));
        std::string out, w;
        while (v >> w)
            out += (out.empty() ? "" : " ") + w;
        return out;
    }
    return "";
}

// "soft hard" of a /proc/PID/limits row ("Max open files").
std::string limit_row(pid_t pid, const std::string& name) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/limits"));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name, 0) != 0)
            continue;
        std::istringstream v(line.substr(26));
        std::string soft, hard;
        v >> soft >> hard;
        return soft + " " + hard;
    }
    return "";
}

// A copy of the fake child that another user can execute: the build tree may live under
// a private home (mode 0700), where nobody cannot reach it.
std::string reachable_child(const TempDir& dir) {
    ::chmod(dir.path().c_str(), 0755);
    const std::string bin = dir / "fake_child";
    std::filesystem::copy_file(FAKE_CHILD_PATH, bin);
    ::chmod(bin.c_str(), 0755);
    return bin;
}

std::string child_table(const std::string& binary, const std::string& keys) {
    return "[child]\nbinary = \"" + binary + "\"\n" + keys + "\n";
}

std::string vigilctl_status(const TempDir& dir, const Vigild& v) {
    Process status({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "status"},
                   dir / "status.out");
    status.wait_exit();
    return status.output();
}

} // namespace

TEST_CASE("the child runs as the configured user, groups, cwd, umask, no_new_privileges",
          "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    const std::string bin = reachable_child(dir);
    Vigild v(dir, child_table(bin, R"(user = "nobody"
group = "nogroup"
supplementary_groups = ["daemon", "nogroup"]
working_directory = "/tmp"
umask = "0027"
no_new_privileges = true
)") + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    CHECK(status_field(*pid, "Uid") == "65534 65534 65534 65534");
    CHECK(status_field(*pid, "Gid") == "65534 65534 65534 65534");
    CHECK(status_field(*pid, "Groups") == "1 65534");
    CHECK(status_field(*pid, "Umask") == "0027");
    CHECK(status_field(*pid, "NoNewPrivs") == "1");
    CHECK(std::filesystem::read_symlink("/proc/" + std::to_string(*pid) + "/cwd") == "/tmp");
    auto env = environ_of(*pid);
    CHECK(std::count(env.begin(), env.end(), "USER=nobody") == 1);
    CHECK(std::count(env.begin(), env.end(), "HOME=/nonexistent") == 1);
    // The record names the uid; status shows what the child runs with.
    CHECK(read_file(v.state_dir() + "/child.state").find("uid=65534\n") != std::string::npos);
    const std::string status = vigilctl_status(dir, v);
    CHECK(status.find("User: nobody (65534)") != std::string::npos);
    CHECK(status.find("Directory: /tmp") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    CHECK_FALSE(process_alive(*pid));
}

TEST_CASE("a user alone brings its own groups, not vigild's", "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, child_table(reachable_child(dir), "user = \"65534\"\n") + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    CHECK(status_field(*pid, "Uid") == "65534 65534 65534 65534");
    CHECK(status_field(*pid, "Gid") == "65534 65534 65534 65534");
    CHECK(status_field(*pid, "Groups") == "65534");
    CHECK(std::filesystem::read_symlink("/proc/" + std::to_string(*pid) + "/cwd") == "/");
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("[child.limits] in every form reach the child", "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    // Within what this machine allows without CAP_SYS_RESOURCE: lowering, or raising a
    // soft limit up to its hard limit. (Not core: an ASan build of the child sets its own
    // core limit to 0 at start.)
    Vigild v(dir, child_table(FAKE_CHILD_PATH, R"([child.limits]
nofile = "1024:4096"
cpu = "infinity"
stack = "8M:infinity"
memlock = 65536
msgqueue = "64K"
nproc = 1000
)") + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    CHECK(limit_row(*pid, "Max open files") == "1024 4096");
    CHECK(limit_row(*pid, "Max cpu time") == "unlimited unlimited");
    CHECK(limit_row(*pid, "Max stack size") == "8388608 unlimited");
    CHECK(limit_row(*pid, "Max locked memory") == "65536 65536");
    CHECK(limit_row(*pid, "Max msgqueue size") == "65536 65536");
    CHECK(limit_row(*pid, "Max processes") == "1000 1000");
    const std::string status = vigilctl_status(dir, v);
    INFO(status);
    CHECK(status.find("Limits: cpu=infinity memlock=65536 msgqueue=65536 nofile=1024:4096 "
                      "nproc=1000 stack=8388608:infinity") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a step that fails before exec names itself: exit 69 on the first start",
          "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    std::string keys, expect;
    SECTION("a hard limit above fs.nr_open") {
        const long nr_open = std::stol(read_file("/proc/sys/fs/nr_open"));
        keys = "[child.limits]\nnofile = \"1024:" + std::to_string(nr_open + 1) + "\"\n";
        expect = "setrlimit(RLIMIT_NOFILE, 1024:" + std::to_string(nr_open + 1) +
                 "): Operation not permitted";
    }
    SECTION("a hard limit above vigild's (needs CAP_SYS_RESOURCE, missing here)") {
        // This machine lacks CAP_SYS_RESOURCE: raising the hard limit fails with EPERM.
        std::string row = limit_row(::getpid(), "Max processes");
        const std::string hard = row.substr(row.find(' ') + 1);
        REQUIRE(hard != "unlimited");
        const std::string above = std::to_string(std::stol(hard) + 1);
        keys = "[child.limits]\nnproc = \"100:" + above + "\"\n";
        expect = "setrlimit(RLIMIT_NPROC, 100:" + above + "): Operation not permitted";
    }
    SECTION("a working directory that does not exist") {
        keys = "working_directory = \"" + dir / "missing" + "\"\n";
        expect = "chdir(" + dir / "missing" + "): No such file or directory";
    }
    SECTION("an env file that does not exist") {
        keys = "env_files = [\"" + dir / "absent.env" + "\"]\n";
        expect = "env file " + dir / "absent.env" + ": failed to open";
    }
    Vigild v(dir, child_table(FAKE_CHILD_PATH, keys) + kNoHealth);
    REQUIRE(v.process().wait_exit() == 69);
    CHECK(v.log().find(expect) != std::string::npos);
}

TEST_CASE("a failing step after the first start is a failed start with back-off",
          "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    const std::string cwd = dir / "cwd";
    ::mkdir(cwd.c_str(), 0755);
    Vigild v(dir,
             child_table(FAKE_CHILD_PATH, "working_directory = \"" + cwd + "\"\n") + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    ::rmdir(cwd.c_str());
    ::kill(*pid, SIGKILL);
    REQUIRE(v.wait_log("chdir(" + cwd + "): No such file or directory"));
    REQUIRE(v.wait_log("-> backoff"));
    ::mkdir(cwd.c_str(), 0755); // fixed: the next attempt starts it
    std::optional<pid_t> next;
    REQUIRE(wait_until([&] {
        next = read_pid_file(v.state_dir() + "/child.pid");
        return next && *next != *pid;
    }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a user that does not exist is a config error at load (78)", "[e2e][exec-env]") {
    TempDir dir;
    Vigild v(dir, child_table(FAKE_CHILD_PATH, "user = \"no-such-user-vigil\"\n") + kNoHealth,
             {"--check-config"});
    REQUIRE(v.process().wait_exit() == 78);
    CHECK(v.log().find(":8: child.user: no such user: no-such-user-vigil") != std::string::npos);
}

TEST_CASE("env files: precedence, quoting, optional files, applied again at each start",
          "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    write_file(dir / "a.env", "# defaults\nFROM_A=a\nSHARED=from-a\nQUOTED=\"two \\\"words\\\"\"\n"
                              "SINGLE='$HOME stays'\nNOTIFY_SOCKET=/run/not-for-the-child\n");
    write_file(dir / "b.env", "SHARED=from-b\nEDITED=first\n");
    const std::string keys = "env_files = [\"" + dir / "a.env" + "\", \"-" + dir / "none.env" +
                             "\", \"" + dir / "b.env" +
                             "\"]\n[child.env]\nFROM_CONFIG = \"c\"\nSHARED = \"from-config\"\n";
    Vigild v(dir,
             child_table(FAKE_CHILD_PATH, keys) + kNoHealth + "[restart]\nreset_after = \"1ms\"\n",
             {}, {{"VIGIL_TEST_INHERITED", "yes"}, {"SHARED", "from-vigild"}});
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    auto env = environ_of(*pid);
    auto has = [&](const std::string& kv) { return std::count(env.begin(), env.end(), kv) == 1; };
    CHECK(has("VIGIL_TEST_INHERITED=yes"));
    CHECK(has("FROM_A=a"));
    CHECK(has("QUOTED=two \"words\""));
    CHECK(has("SINGLE=$HOME stays"));
    CHECK(has("FROM_CONFIG=c"));
    CHECK(has("SHARED=from-config"));
    CHECK(has("EDITED=first"));
    CHECK(std::none_of(env.begin(), env.end(),
                       [](const std::string& kv) { return kv.rfind("NOTIFY_SOCKET=", 0) == 0; }));
    // An edited file applies at the next start.
    write_file(dir / "b.env", "SHARED=from-b\nEDITED=second\n");
    ::kill(*pid, SIGKILL);
    std::optional<pid_t> next;
    REQUIRE(wait_until([&] {
        next = read_pid_file(v.state_dir() + "/child.pid");
        return next && *next != *pid && process_alive(*next);
    }));
    REQUIRE(wait_until([&] {
        env = environ_of(*next);
        return !env.empty();
    }));
    CHECK(has("EDITED=second"));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("inherit_env = false: the child starts from an empty environment", "[e2e][exec-env]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir,
             child_table(FAKE_CHILD_PATH, "inherit_env = false\n[child.env]\nONLY = \"me\"\n") +
                 kNoHealth,
             {}, {{"VIGIL_TEST_INHERITED", "yes"}});
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    auto env = environ_of(*pid);
    std::sort(env.begin(), env.end());
    REQUIRE(env.size() == 2);
    CHECK(env[0] == "ONLY=me");
    CHECK(env[1].rfind("VIGIL_SPAWN_TOKEN=", 0) == 0);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
