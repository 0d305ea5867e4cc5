// Health and readiness through the real vigild and the fake child's gRPC health server:
// readiness, each failure kind, hang detection, deaths while starting, startup timeout.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <map>

using namespace vt;

namespace {

// [health] probing the fake child's socket fast; `overrides` replace or add keys (raw TOML
// values).
std::string health_table(const TempDir& dir, std::map<std::string, std::string> overrides = {}) {
    std::map<std::string, std::string> keys{
        {"kind", "\"grpc\""},       {"address", "\"unix://" + dir / "child.sock" + "\""},
        {"interval", "\"100ms\""},  {"timeout", "\"300ms\""},
        {"failure_threshold", "3"}, {"startup_timeout", "\"10s\""}};
    for (auto& [k, v] : overrides)
        keys[k] = v;
    std::string out = "[health]\n";
    for (auto& [k, v] : keys)
        out += k + " = " + v + "\n";
    return out;
}

std::vector<std::string> served(const TempDir& dir, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--socket", dir / "child.sock", "--stamp-file", dir / "stamps"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

const std::string kFastRestart = "[restart]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n";

} // namespace

TEST_CASE("a serving child goes starting -> running at its first SERVING", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir)) + health_table(dir));
    REQUIRE(v.wait_log("state starting -> running (healthy: SERVING"));
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    CHECK(process_alive(*pid));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a slow child stays starting until it serves", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--slow-start", "800"})) + health_table(dir));
    REQUIRE(v.wait_log("not ready: connection refused"));
    CHECK(v.log().find("-> running") == std::string::npos);
    REQUIRE(v.wait_log("-> running (healthy: SERVING"));
    // Running came after the socket was served, which was >= 800ms after the child's start.
    const std::string log = v.log();
    CHECK(log.find("starting to serve grpc.health.v1.Health") < log.find("-> running"));
    CHECK(read_stamps(dir / "stamps").size() == 1);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("NOT_SERVING makes the child unhealthy, then dump signal, kill and restart", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir,
             fake_child_table(
                 served(dir, {"--not-serving-after", "400", "--signal-file", dir / "signals"})) +
                 health_table(dir, {{"dump_signal", "\"SIGUSR1\""}, {"dump_wait", "\"200ms\""}}) +
                 kFastRestart);
    REQUIRE(v.wait_log("-> running"));
    auto first = v.wait_child_pid();
    REQUIRE(first);
    REQUIRE(v.wait_log("state running -> unhealthy (health check failed (1/3): NOT_SERVING"));
    REQUIRE(v.wait_log("3 consecutive failed health checks, last: NOT_SERVING"));
    REQUIRE(v.wait_log("killed by SIGKILL"));
    CHECK(read_file(dir / "signals").find("SIGUSR1") != std::string::npos);
    // A new child comes up and is healthy again.
    REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() >= 2; }));
    REQUIRE(v.wait_log("restart #1"));
    CHECK_FALSE(process_alive(*first));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a hung child (deadline exceeded) is killed and restarted", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--hang-after", "400"})) + health_table(dir) +
                      kFastRestart);
    REQUIRE(v.wait_log("-> running"));
    auto first = v.wait_child_pid();
    REQUIRE(first);
    REQUIRE(v.wait_log("health check failed (1/3): deadline exceeded"));
    REQUIRE(v.wait_log("3 consecutive failed health checks, last: deadline exceeded"));
    REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() >= 2; }));
    CHECK_FALSE(process_alive(*first));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a SIGSTOPped child is killed and restarted", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir)) + health_table(dir) + kFastRestart);
    REQUIRE(v.wait_log("-> running"));
    auto first = v.wait_child_pid();
    REQUIRE(first);
    ::kill(*first, SIGSTOP);
    REQUIRE(v.wait_log("consecutive failed health checks"));
    REQUIRE(wait_until([&] {
        auto p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != *first;
    }));
    REQUIRE(v.wait_log("restart #1"));
    CHECK_FALSE(process_alive(*first));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

// Issue 10, target 5: probes go out every interval whether or not the last one answered.
// One at a time, a hung child would see exactly failure_threshold (3) checks before its
// kill; here it sees a new one every interval while the first three wait out their
// deadlines.
TEST_CASE("a hung child keeps getting probes every interval until it is killed", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--hang-after", "400", "--log-level", "debug"})) +
                      health_table(dir, {{"interval", "\"50ms\""}, {"timeout", "\"1s\""}}) +
                      kFastRestart);
    REQUIRE(v.wait_log("-> running"));
    auto first = v.wait_child_pid();
    REQUIRE(first);
    const std::string killed = "3 consecutive failed health checks, last: deadline exceeded";
    REQUIRE(v.wait_log(killed));
    REQUIRE(wait_until([&] {
        auto p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != *first;
    }));
    CHECK_FALSE(process_alive(*first));
    const std::string log = v.log();
    const std::string before_kill = log.substr(0, log.find(killed));
    std::size_t hung = 0;
    for (auto at = before_kill.find("no answer (hung)"); at != std::string::npos;
         at = before_kill.find("no answer (hung)", at + 1))
        ++hung;
    INFO("checks the hung child received before its kill: " << hung);
    CHECK(hung > 3);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a healthy answer clears an unhealthy child", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(
                      served(dir, {"--not-serving-after", "300", "--not-serving-for", "150"})) +
                      health_table(dir, {{"failure_threshold", "100"}}));
    REQUIRE(v.wait_log("-> unhealthy"));
    REQUIRE(v.wait_log("state unhealthy -> running (health recovered: SERVING"));
    CHECK(read_stamps(dir / "stamps").size() == 1);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("UNKNOWN and SERVICE_UNKNOWN are failures, named as what they are", "[e2e]") {
    become_subreaper();
    TempDir dir;
    SECTION("UNKNOWN") {
        Vigild v(dir, fake_child_table(served(dir, {"--unknown-status"})) +
                          health_table(dir, {{"startup_timeout", "\"1500ms\""}}));
        REQUIRE(v.wait_log("not ready: UNKNOWN"));
        REQUIRE(v.process().wait_exit() == 69);
        CHECK(v.log().find("last: UNKNOWN") != std::string::npos);
    }
    SECTION("SERVICE_UNKNOWN") {
        Vigild v(dir, fake_child_table(served(dir)) +
                          health_table(
                              dir, {{"service", "\"nosuch\""}, {"startup_timeout", "\"1500ms\""}}));
        REQUIRE(v.wait_log("not ready: SERVICE_UNKNOWN: the child does not know service "
                           "'nosuch'"));
        REQUIRE(v.process().wait_exit() == 69);
    }
    SECTION("a named service the child knows") {
        Vigild v(dir, fake_child_table(served(dir, {"--service", "containerd"})) +
                          health_table(dir, {{"service", "\"containerd\""}}));
        REQUIRE(v.wait_log("-> running (healthy: SERVING"));
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
}

TEST_CASE("a crash of a running child is restarted at once", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--crash-after", "500"})) + health_table(dir) +
                      "[restart]\nreset_after = \"100ms\"\n");
    REQUIRE(v.wait_log("killed by SIGABRT"));
    REQUIRE(v.wait_log("restarting in 0)"));
    REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() >= 2; }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a child that dies while starting is a failed start at once", "[e2e]") {
    become_subreaper();
    TempDir dir;
    // Never serves, exits after 200ms: each attempt fails long before startup_timeout.
    Vigild v(dir, fake_child_table(served(
                      dir, {"--slow-start", "60000", "--exit-after", "200", "--exit-code", "4"})) +
                      health_table(dir, {{"startup_timeout", "\"20s\""}}) + kFastRestart);
    REQUIRE(v.wait_log("state starting -> backoff (child pid"));
    CHECK(v.log().find("exit code 4") != std::string::npos);
    // A failed start is never restarted "at once".
    CHECK(v.log().find("restarting in 50ms") != std::string::npos);
    REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() >= 3; }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("first start: not healthy within startup_timeout -> child stopped, exit 69", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--slow-start", "60000"})) +
                      health_table(dir, {{"startup_timeout", "\"1s\""}}));
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.process().wait_exit() == 69);
    CHECK(v.log().find("not healthy within startup_timeout 1s of vigild's start (last: "
                       "connection refused") != std::string::npos);
    CHECK_FALSE(process_alive(*pid));
    CHECK_FALSE(file_exists(v.state_dir() + "/child.pid"));
}

TEST_CASE("after the first healthy answer, a startup timeout restarts instead of exiting",
          "[e2e]") {
    become_subreaper();
    TempDir dir;
    // Without rollback (test_rollback.cpp has it): the failed start is an ordinary one.
    const std::string no_rollback = kFastRestart + "rollback = false\n";
    Vigild v(dir, fake_child_table(served(dir)) +
                      health_table(dir, {{"startup_timeout", "\"1s\""}}) + no_rollback);
    REQUIRE(v.wait_log("-> running"));
    // Reload into a child that never serves: each attempt is killed at startup_timeout.
    write_file(dir / "vigild.toml",
               daemon_table(dir) + fake_child_table(served(dir, {"--slow-start", "60000"})) +
                   health_table(dir, {{"startup_timeout", "\"1s\""}}) + no_rollback);
    v.process().signal(SIGHUP);
    REQUIRE(v.wait_log("not healthy within startup_timeout 1s (last: connection refused"));
    REQUIRE(v.wait_log("killed by SIGKILL"));
    REQUIRE(v.wait_log("state backoff -> starting (restart #"));
    CHECK_FALSE(v.process().exited());
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("an adopted child is health-checked too", "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table(served(dir)) + health_table(dir) + kFastRestart;
    pid_t child = 0;
    {
        Vigild first(dir, body, {}, {}, "first.log");
        REQUIRE(first.wait_log("-> running"));
        child = *first.wait_child_pid();
        first.process().signal(SIGKILL);
        REQUIRE(first.process().wait_exit() == 128 + SIGKILL);
    }
    Vigild second(dir, body, {}, {}, "second.log");
    REQUIRE(second.wait_log("adopted pid " + std::to_string(child)));
    REQUIRE(second.wait_log("-> running (healthy: SERVING"));
    ::kill(child, SIGSTOP);
    REQUIRE(second.wait_log("consecutive failed health checks"));
    REQUIRE(second.wait_log("restart #1"));
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(child);
    }));
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
}

TEST_CASE("a reload that turns health checks off makes a starting child running", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table(served(dir, {"--slow-start", "60000"})) +
                      health_table(dir, {{"startup_timeout", "\"30s\""}}));
    REQUIRE(v.wait_log("not ready: connection refused"));
    const pid_t pid = *v.wait_child_pid();
    write_file(dir / "vigild.toml", daemon_table(dir) +
                                        fake_child_table(served(dir, {"--slow-start", "60000"})) +
                                        health_table(dir, {{"kind", "\"none\""}}));
    v.process().signal(SIGHUP);
    REQUIRE(v.wait_log("state starting -> running (health checks turned off by reload"));
    const size_t mark = v.log().size();
    // No probe runs any more: nothing kills the child although it never serves.
    CHECK_FALSE(v.wait_log("health check failed", 1500ms, mark));
    CHECK(read_pid_file(v.state_dir() + "/child.pid") == pid);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
