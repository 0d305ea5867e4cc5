// Operator intent lasts (issue 9 #1): a child stopped with `vigilctl stop` stays stopped
// across vigild SIGKILLs and SIGUSR2 upgrades, until `vigilctl start` or a clean stop of
// vigild.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

int vigilctl(const TempDir& dir, const Vigild& v, const std::vector<std::string>& args,
             const std::string& out) {
    std::vector<std::string> argv{VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, dir / out);
    return p.wait_exit().value_or(-1);
}

std::string body(const TempDir& dir) {
    return fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth;
}

} // namespace

TEST_CASE("a stopped child stays stopped across a vigild SIGKILL until vigilctl start",
          "[e2e][hold]") {
    become_subreaper();
    TempDir dir;
    {
        Vigild first(dir, body(dir), {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        // Without health checks `running` means exec'd: the child stamps a moment later.
        REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() == 1; }));
        REQUIRE(vigilctl(dir, first, {"stop"}, "stop.out") == 0);
        CHECK_FALSE(process_alive(*pid));
        CHECK(file_exists(first.state_dir() + "/child.hold"));
        first.process().signal(SIGKILL);
        REQUIRE(first.process().wait_exit() == 128 + SIGKILL);
    }
    reap_children();
    Vigild second(dir, body(dir), {}, {}, "second.log");
    REQUIRE(second.wait_log("not started: held by the operator"));
    CHECK(read_stamps(dir / "stamps").size() == 1); // no second start
    REQUIRE(vigilctl(dir, second, {"status"}, "status.out") >= 0);
    CHECK(read_file(dir / "status.out").find("held by the operator") != std::string::npos);
    REQUIRE(vigilctl(dir, second, {"start"}, "start.out") == 0);
    REQUIRE(second.wait_log("-> running"));
    CHECK(wait_until([&] { return read_stamps(dir / "stamps").size() == 2; }));
    CHECK_FALSE(file_exists(second.state_dir() + "/child.hold"));
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
}

TEST_CASE("the hold survives SIGUSR2 and ends with a clean stop of vigild", "[e2e][hold]") {
    become_subreaper();
    TempDir dir;
    {
        Vigild first(dir, body(dir), {}, {}, "first.log");
        REQUIRE(first.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() == 1; }));
        REQUIRE(vigilctl(dir, first, {"stop"}, "stop.out") == 0);
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
    }
    {
        Vigild second(dir, body(dir), {}, {}, "second.log");
        REQUIRE(second.wait_log("not started: held by the operator"));
        second.process().signal(SIGTERM); // clean stop: the hold ends
        REQUIRE(second.process().wait_exit() == 0);
    }
    CHECK_FALSE(file_exists(dir / "state/child.hold"));
    Vigild third(dir, body(dir), {}, {}, "third.log");
    REQUIRE(third.wait_log("-> running"));
    CHECK(wait_until([&] { return read_stamps(dir / "stamps").size() == 2; }));
    third.process().signal(SIGTERM);
    REQUIRE(third.process().wait_exit() == 0);
}

TEST_CASE("a vigild killed during the operator's stop: the next one finishes the stop",
          "[e2e][hold]") {
    become_subreaper();
    TempDir dir;
    const std::string slow = fake_child_table({"--stamp-file", dir / "stamps", "--ignore-term"},
                                              "stop_timeout = \"2s\"\n") +
                             kNoHealth;
    pid_t child = 0;
    {
        Vigild first(dir, slow, {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        child = *pid;
        Process stop({VIGILCTL_PATH, "--socket", first.state_dir() + "/vigild.sock", "stop"},
                     dir / "stop.out");
        REQUIRE(first.wait_log("-> stopping"));
        first.process().signal(SIGKILL);
        REQUIRE(first.process().wait_exit() == 128 + SIGKILL);
        stop.wait_exit();
    }
    REQUIRE(process_alive(child)); // it ignores SIGTERM
    Vigild second(dir, slow, {}, {}, "second.log");
    REQUIRE(second.wait_log("adopted pid " + std::to_string(child)));
    REQUIRE(second.wait_log("-> stopped"));
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(child);
    }));
    CHECK(read_stamps(dir / "stamps").size() == 1);
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
}
