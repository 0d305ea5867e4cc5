// vigild against the real containerd from Debian's package, where it is installed:
// running, SIGKILL -> new pid, SIGSTOP -> killed and restarted, adoption after a vigild
// crash with health resuming, SIGTERM -> containerd gone.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <unistd.h>

using namespace vt;

namespace {

std::optional<std::string> containerd_path() {
    for (const char* p :
         {"/usr/bin/containerd", "/usr/local/bin/containerd", "/usr/sbin/containerd"})
        if (::access(p, X_OK) == 0)
            return std::string(p);
    return std::nullopt;
}

// The default config of DESIGN.md, with the CRI plugin off (no Kubernetes here) and fast
// health settings so the test runs in seconds.
std::string containerd_config(const std::string& binary) {
    return "[child]\nbinary = \"" + binary +
           "\"\n"
           "oom_score_adj = 400\n"
           "stop_timeout = \"10s\"\n"
           "[child.config]\n"
           "version = 2\n"
           "root = \"${root_dir}/containerd\"\n"
           "state = \"${state_dir}/containerd\"\n"
           "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
           "[child.config.grpc]\n"
           "address = \"${state_dir}/containerd.sock\"\n"
           "[health]\n"
           "interval = \"200ms\"\n"
           "timeout = \"500ms\"\n"
           "failure_threshold = 3\n"
           "startup_timeout = \"30s\"\n"
           "dump_signal = \"SIGUSR1\"\n"
           "[restart]\nbackoff_initial = \"100ms\"\n";
}

pid_t wait_new_pid(Vigild& v, pid_t old) {
    std::optional<pid_t> p;
    wait_until([&] {
        p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != old;
    });
    return p.value_or(0);
}

} // namespace

TEST_CASE("real containerd: running, SIGKILL, SIGSTOP, adoption, stop", "[e2e][containerd]") {
    auto binary = containerd_path();
    if (!binary) {
        WARN("SKIPPED: containerd is not installed (apt-get install containerd); this test "
             "checked nothing");
        return;
    }
    become_subreaper();
    TempDir dir;
    const std::string body = containerd_config(*binary);

    Vigild first(dir, body, {}, {}, "first.log");
    REQUIRE(first.wait_log("state starting -> running (healthy: SERVING", 40s));
    pid_t pid = *first.wait_child_pid();
    CHECK(oom_score_of(pid) == 400);
    CHECK(read_file("/proc/" + std::to_string(pid) + "/cmdline")
              .find(first.state_dir() + "/containerd.toml") != std::string::npos);

    // SIGKILL containerd: a new pid, running again.
    size_t mark = first.log().size();
    ::kill(pid, SIGKILL);
    const pid_t second_pid = wait_new_pid(first, pid);
    REQUIRE(second_pid != 0);
    REQUIRE(first.wait_log("-> running (healthy: SERVING", 40s, mark));
    pid = second_pid;

    // SIGSTOP containerd: alive but hung; vigild kills it and starts a new one.
    mark = first.log().size();
    ::kill(pid, SIGSTOP);
    REQUIRE(first.wait_log("consecutive failed health checks", 40s, mark));
    const pid_t third_pid = wait_new_pid(first, pid);
    REQUIRE(third_pid != 0);
    REQUIRE(first.wait_log("-> running (healthy: SERVING", 40s, mark));
    CHECK_FALSE(process_alive(pid));
    // The hang left a report: containerd as it was, stopped, before the kill.
    REQUIRE(first.wait_log("(hang of pid " + std::to_string(pid), 40s, mark));
    {
        const std::string log = first.log();
        const auto at = log.find(" written (hang of pid " + std::to_string(pid), mark);
        REQUIRE(at != std::string::npos);
        const auto from = log.rfind("incident report ", at) + 16;
        const std::string id = log.substr(from, at - from);
        const std::string report = read_file(dir / ("root/incidents/incident-" + id + ".txt"));
        INFO(report);
        CHECK(report.find("kind: hang\n") != std::string::npos);
        CHECK(report.find("Name:\tcontainerd") != std::string::npos);
        CHECK(report.find("State:\tT (stopped)") != std::string::npos);
        CHECK(report.find("exit: killed by SIGKILL") != std::string::npos);
    }
    pid = third_pid;

    // SIGKILL vigild: containerd keeps serving and the next vigild adopts it.
    first.process().signal(SIGKILL);
    REQUIRE(first.process().wait_exit() == 128 + SIGKILL);
    REQUIRE(process_alive(pid));
    Vigild second(dir, body, {}, {}, "second.log");
    REQUIRE(second.wait_log("adopted pid " + std::to_string(pid), 40s));
    REQUIRE(second.wait_log("-> running (healthy: SERVING", 40s));
    CHECK(read_pid_file(second.state_dir() + "/child.pid") == pid);
    CHECK(oom_score_of(pid) == 400);

    // SIGTERM vigild: containerd is stopped and gone, records removed.
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit(40s) == 0);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(pid);
    }));
    CHECK_FALSE(file_exists(second.state_dir() + "/child.pid"));
}
