// vigild's cold start: the child is exec'd first, and what the child does not need (gRPC,
// the control server) comes up after; a control socket that cannot be served still stops
// vigild before anything is spawned.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>

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
