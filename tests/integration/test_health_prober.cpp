// Component test: GrpcHealthProber against the real fake child, one outcome kind at a time,
// and the spawner's exec-error report, without vigild around them.
#include "harness.hpp"

#include "vigil/health.hpp"
#include "vigil/spawn.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <sys/wait.h>

using namespace vt;

namespace {

// Runs one probe through a loop and returns its outcome.
vigil::HealthOutcome probe_once(const std::string& address, const std::string& service = "",
                                Ms timeout = 300ms) {
    vigil::asio::io_context io;
    vigil::HealthConfig hc;
    hc.address = address;
    hc.service = service;
    hc.timeout = timeout;
    std::optional<vigil::HealthOutcome> got;
    {
        vigil::GrpcHealthProber prober(io, hc);
        prober.reset();
        // The reply comes from a gRPC thread: keep the loop alive until it is posted.
        auto guard = vigil::asio::make_work_guard(io);
        prober.probe([&](const vigil::HealthOutcome& o) { got = o; });
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (!got && std::chrono::steady_clock::now() < end)
            io.run_for(std::chrono::milliseconds(10));
    }
    REQUIRE(got.has_value());
    return *got;
}

struct FakeChild {
    FakeChild(const TempDir& dir, std::vector<std::string> args)
        : proc(std::invoke([&] {
                   std::vector<std::string> argv{FAKE_CHILD_PATH, "--socket", dir / "h.sock"};
                   argv.insert(argv.end(), args.begin(), args.end());
                   return argv;
               }),
               dir / "child.log") {
        REQUIRE(proc.wait_output("serving grpc.health.v1.Health"));
    }
    Process proc;
};

} // namespace

TEST_CASE("GrpcHealthProber keeps each outcome kind apart", "[component]") {
    TempDir dir;
    const std::string addr = "unix://" + dir / "h.sock";
    SECTION("connection refused: nothing listens") {
        auto o = probe_once(addr);
        CHECK(o.result == vigil::HealthResult::connection_refused);
        CHECK_FALSE(o.healthy());
    }
    SECTION("a name that does not resolve is not called \"connection refused\"") {
        auto o = probe_once("dns:///vigil-no-such-host.invalid:50051");
        INFO(o.describe());
        CHECK(o.result != vigil::HealthResult::connection_refused);
        CHECK_FALSE(o.healthy());
    }
    SECTION("SERVING") {
        FakeChild c(dir, {});
        auto o = probe_once(addr);
        CHECK(o.result == vigil::HealthResult::serving);
        CHECK(o.healthy());
    }
    SECTION("NOT_SERVING") {
        FakeChild c(dir, {"--not-serving-after", "0"});
        CHECK(probe_once(addr).result == vigil::HealthResult::not_serving);
    }
    SECTION("UNKNOWN") {
        FakeChild c(dir, {"--unknown-status"});
        CHECK(probe_once(addr).result == vigil::HealthResult::unknown);
    }
    SECTION("SERVICE_UNKNOWN") {
        FakeChild c(dir, {});
        auto o = probe_once(addr, "nosuch");
        CHECK(o.result == vigil::HealthResult::service_unknown);
        CHECK(o.describe().find("nosuch") != std::string::npos);
    }
    SECTION("deadline exceeded: the child hangs") {
        FakeChild c(dir, {"--hang-after", "0"});
        const auto t0 = std::chrono::steady_clock::now();
        auto o = probe_once(addr, "", 250ms);
        CHECK(o.result == vigil::HealthResult::deadline_exceeded);
        CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);
    }
    SECTION("deadline exceeded: the child is stopped") {
        FakeChild c(dir, {});
        ::kill(c.proc.pid(), SIGSTOP);
        CHECK(probe_once(addr, "", 250ms).result == vigil::HealthResult::deadline_exceeded);
        ::kill(c.proc.pid(), SIGCONT);
    }
}

TEST_CASE("spawn_child reports an exec failure with its errno and reaps the child", "[component]") {
    vigil::SpawnSpec spec;
    spec.binary = "/nonexistent/containerdx";
    spec.argv = {"containerdx"};
    auto r = vigil::spawn_child(spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message() ==
          "failed to exec /nonexistent/containerdx: No such file or directory");
    CHECK(::waitpid(-1, nullptr, WNOHANG) == -1); // no zombie left: ECHILD

    spec.binary = "no-such-binary-anywhere";
    auto r2 = vigil::spawn_child(spec);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().message().find("not found on PATH") != std::string::npos);

    TempDir dir;
    write_file(dir / "not-executable", "#!/bin/sh\n"); // mode 0644: no x bit, even for root
    spec.binary = dir / "not-executable";
    auto r3 = vigil::spawn_child(spec);
    REQUIRE_FALSE(r3.ok());
    CHECK(r3.error().message() ==
          "failed to exec " + dir / "not-executable" + ": Permission denied");
}

TEST_CASE("spawn_child: new session, oom score, clean environment, no leaked fds", "[component]") {
    TempDir dir;
    vigil::SpawnSpec spec;
    spec.binary = FAKE_CHILD_PATH;
    spec.argv = {FAKE_CHILD_PATH, "--stamp-file", dir / "stamps"};
    spec.env = {"PATH=/usr/bin:/bin", "KEEP=1"};
    spec.oom_score = 250;
    spec.new_session = true;
    auto r = vigil::spawn_child(spec);
    REQUIRE(r.ok());
    const pid_t pid = r->pid;
    REQUIRE(wait_until([&] { return read_stamps(dir / "stamps").size() == 1; }));
    CHECK(oom_score_of(pid) == 250);
    CHECK(::getsid(pid) == pid);
    CHECK(environ_of(pid) == std::vector<std::string>{"PATH=/usr/bin:/bin", "KEEP=1"});
    // Only 0-2 (inherited from the test) may be open in the child right after exec.
    for (const auto& fd : fd_targets_of(pid)) {
        INFO(fd);
        const int n = std::stoi(fd.substr(0, fd.find(' ')));
        CHECK(n <= 2);
    }
    REQUIRE(r->pidfd.valid());
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
}
