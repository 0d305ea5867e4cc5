// vigild's cold start: the child is exec'd first, and what the child does not need (gRPC,
// the control server) comes up after; a control socket that cannot be served still stops
// vigild before anything is spawned.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

} // namespace

TEST_CASE("cold start: the child is exec'd before the control server starts serving",
          "[e2e][start-order]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth);
    REQUIRE(v.wait_log("control API listening on"));
    REQUIRE(v.wait_log("-> running"));
    const std::string log = v.log();
    const auto spawned = log.find("spawned pid");
    const auto serving = log.find("control API listening on");
    REQUIRE(spawned != std::string::npos);
    // spawn_child returns once the child's exec succeeded, and logs right after it.
    CHECK(spawned < serving);
    // The control API works all the same.
    Process ctl({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "status"},
                dir / "ctl.out");
    CHECK(ctl.wait_exit() == 0);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("cold start: a control socket path that cannot be served exits 73 before any spawn",
          "[e2e][start-order]") {
    become_subreaper();
    TempDir dir;
    write_file(dir / "not-a-socket", "a regular file\n");
    write_file(dir / "vigild.toml",
               daemon_table(dir) + "control_socket = \"" + dir / "not-a-socket" + "\"\n" +
                   fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth);
    Vigild v(dir, "");
    REQUIRE(v.process().wait_exit() == 73);
    CHECK(v.log().find("is not a socket") != std::string::npos);
    CHECK_FALSE(file_exists(dir / "stamps")); // the child never ran
    CHECK(v.log().find("spawned pid") == std::string::npos);
    CHECK(read_file(dir / "not-a-socket") == "a regular file\n");
}

namespace {

// The names (comm) of the threads of `pid`.
std::vector<std::string> thread_names(pid_t pid) {
    std::vector<std::string> names;
    const std::string task = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& e : std::filesystem::directory_iterator(task)) {
        std::string comm = read_file(e.path() / "comm");
        while (!comm.empty() && comm.back() == '\n')
            comm.pop_back();
        names.push_back(comm);
    }
    return names;
}

bool has_thread(pid_t pid, const std::string& name) {
    const auto names = thread_names(pid);
    return std::find(names.begin(), names.end(), name) != names.end();
}

} // namespace

TEST_CASE("idle: gRPC and its threads start with the first control connection, not before",
          "[e2e][start-order]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({}) + kNoHealth);
    REQUIRE(v.wait_log("control API listening on"));
    REQUIRE(v.wait_log("-> running"));
    const pid_t pid = v.process().pid();
    // gRPC's callback servers poll with their "nexting_thread"s (two or more), and gRPC's
    // core runs its timers on "grpc_global_tim": none of it yet, only the loop and the logger.
    INFO("threads: " << fmt::format("{}", fmt::join(thread_names(pid), " ")));
    CHECK_FALSE(has_thread(pid, "nexting_thread"));
    CHECK_FALSE(has_thread(pid, "grpc_global_tim"));
    CHECK(thread_names(pid).size() == 2);
    // The first connection builds the servers and is served.
    Process ctl({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "status"},
                dir / "ctl.out");
    CHECK(ctl.wait_exit() == 0);
    CHECK(read_file(dir / "ctl.out").find("running") != std::string::npos);
    CHECK(wait_until([&] { return has_thread(pid, "nexting_thread"); }));
    // And the next ones too.
    Process again({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "status"},
                  dir / "ctl2.out");
    CHECK(again.wait_exit() == 0);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
