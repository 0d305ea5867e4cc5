// [restart] rollback: a reload whose new child never comes up goes back to the previous
// configuration; one that comes up is kept (issue 11, item 5).
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>

using namespace vt;

namespace {

std::string config_for(const TempDir& dir, std::vector<std::string> more,
                       const std::string& restart = "") {
    std::vector<std::string> args{"--socket", dir / "c.sock"};
    args.insert(args.end(), more.begin(), more.end());
    return daemon_table(dir) + fake_child_table(args) + "[health]\naddress = \"unix://" +
           dir / "c.sock" +
           "\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nstartup_timeout = \"1s\"\n" +
           "[restart]\nbackoff_initial = \"100ms\"\n" + restart;
}

std::string cmdline_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (auto& c : s)
        if (c == '\0')
            c = ' ';
    return s;
}

} // namespace

TEST_CASE("rollback: a reload whose child never becomes healthy goes back", "[e2e][rollback]") {
    become_subreaper();
    TempDir dir;
    write_file(dir / "vigild.toml", config_for(dir, {}));
    Vigild v(dir, "");
    REQUIRE(v.wait_log("-> running"));
    const pid_t first = *v.wait_child_pid();

    // The new child answers only after a minute: past startup_timeout (1s).
    write_file(dir / "vigild.toml", config_for(dir, {"--slow-start", "60000"}));
    v.process().signal(SIGHUP);
    REQUIRE(v.wait_log("rolled back to the previous configuration: the reloaded one's child"));
    CHECK(v.log().find("not healthy within startup_timeout 1s") != std::string::npos);
    // Back on the previous configuration: a healthy child without --slow-start.
    pid_t back = 0;
    REQUIRE(wait_until([&] {
        const auto p = read_pid_file(v.state_dir() + "/child.pid");
        if (!p || *p == first)
            return false;
        back = *p;
        return cmdline_of(back).find("--socket") != std::string::npos &&
               run_vigilctl(dir, {"status"}).code == 0;
    }));
    CHECK(cmdline_of(back).find("--slow-start") == std::string::npos);
    const auto status = run_vigilctl(dir, {"status"});
    CHECK(status.out.find("Rollback: to the previous configuration at ") != std::string::npos);
    CHECK(status.out.find("the reloaded configuration's child ") != std::string::npos);
    const auto running = run_vigilctl(dir, {"config"});
    CHECK(running.out.find("--slow-start") == std::string::npos);
    const auto rejected = run_vigilctl(dir, {"config", "--rejected"});
    CHECK(rejected.code == 0);
    CHECK(rejected.out.find("\"--slow-start\", \"60000\"") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("rollback: a reload whose child comes up is kept; rollback = false never goes back",
          "[e2e][rollback]") {
    become_subreaper();
    {
        TempDir dir;
        write_file(dir / "vigild.toml", config_for(dir, {}));
        Vigild v(dir, "");
        REQUIRE(v.wait_log("-> running"));
        write_file(dir / "vigild.toml", config_for(dir, {"--service", "kept"}));
        v.process().signal(SIGHUP);
        REQUIRE(v.wait_log("reload kept: the new child is healthy"));
        CHECK(run_vigilctl(dir, {"config"}).out.find("\"kept\"") != std::string::npos);
        const auto rejected = run_vigilctl(dir, {"config", "--rejected"});
        CHECK(rejected.code == 1);
        CHECK(rejected.out.find("no configuration was rejected") != std::string::npos);
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    {
        TempDir dir;
        write_file(dir / "vigild.toml", config_for(dir, {}, "rollback = false\n"));
        Vigild v(dir, "");
        REQUIRE(v.wait_log("-> running"));
        write_file(dir / "vigild.toml",
                   config_for(dir, {"--slow-start", "60000"}, "rollback = false\n"));
        v.process().signal(SIGHUP);
        // The failed start is an ordinary one: back-off, and the next try on the new file.
        REQUIRE(v.wait_log("not healthy within startup_timeout 1s"));
        REQUIRE(v.wait_log("; restarting in "));
        CHECK(v.log().find("rolled back") == std::string::npos);
        CHECK(run_vigilctl(dir, {"config"}).out.find("--slow-start") != std::string::npos);
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
}
