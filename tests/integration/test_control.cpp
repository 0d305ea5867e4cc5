// The control API end to end: the real vigild with the fake child, driven by the real
// vigilctl (and, for load and stuck-watcher checks, by gRPC stubs).
#include "harness.hpp"

#include "vigil/v1/supervisor.grpc.pb.h"

#include <catch2/catch.hpp>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <sys/stat.h>
#include <thread>

using namespace vt;

namespace {

std::string sock_of(const TempDir& dir) {
    return dir / "state/vigild.sock";
}

std::string child_with_health(const TempDir& dir, std::vector<std::string> more = {},
                              const std::string& extra_child = "") {
    std::vector<std::string> args{"--socket",     dir / "c.sock",  "--stamp-file",
                                  dir / "stamps", "--signal-file", dir / "signals"};
    args.insert(args.end(), more.begin(), more.end());
    return fake_child_table(args, extra_child) + "[health]\naddress = \"unix://" + dir / "c.sock" +
           "\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n";
}

struct Ctl {
    int code;
    std::string out;
};

// Runs vigilctl to completion; `prefix` runs it through e.g. setpriv.
Ctl vigilctl(const TempDir& dir, std::vector<std::string> args,
             std::vector<std::string> prefix = {}) {
    static int n = 0;
    const std::string out = dir / ("ctl." + std::to_string(++n) + ".out");
    std::vector<std::string> argv = prefix;
    argv.push_back(VIGILCTL_PATH);
    argv.push_back("--socket");
    argv.push_back(sock_of(dir));
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, out);
    auto code = p.wait_exit();
    REQUIRE(code.has_value());
    return {*code, p.output()};
}

std::unique_ptr<vigil::v1::Supervisor::Stub> stub(const TempDir& dir) {
    return vigil::v1::Supervisor::NewStub(
        grpc::CreateChannel("unix://" + sock_of(dir), grpc::InsecureChannelCredentials()));
}

} // namespace

TEST_CASE("vigilctl drives every command against a running vigild", "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, child_with_health(dir, {}, "output = \"capture\"\n"));
    REQUIRE(v.wait_log("-> running"));
    const pid_t first = *v.wait_child_pid();

    auto st = vigilctl(dir, {"status"});
    CHECK(st.code == 0);
    CHECK(st.out.find("State: running") != std::string::npos);
    CHECK(st.out.find("PID: " + std::to_string(first)) != std::string::npos);
    CHECK(st.out.find("OOM score: configured inherit") != std::string::npos);

    auto js = vigilctl(dir, {"--json", "status"});
    CHECK(js.code == 0);
    for (const char* key : {"\"state\":\"running\"", "\"restart_count\":0", "\"adopted\":false",
                            "\"consecutive_failures\":0", "\"last_result\":\"SERVING\""})
        CHECK(js.out.find(key) != std::string::npos);

    // Start while running: done already, exit 0 (as systemctl start of an active unit).
    auto again = vigilctl(dir, {"start"});
    CHECK(again.code == 0);
    CHECK(again.out.find("already running") != std::string::npos);

    // kill SIGNAL reaches the child.
    CHECK(vigilctl(dir, {"kill", "SIGUSR1"}).code == 0);
    REQUIRE(wait_until(
        [&] { return read_file(dir / "signals").find("SIGUSR1") != std::string::npos; }));
    auto badsig = vigilctl(dir, {"kill", "SIGNOPE"});
    CHECK(badsig.code == 64);

    // OOM score: set, read back, inherit again.
    CHECK(vigilctl(dir, {"oom-score", "321"}).code == 0);
    CHECK(oom_score_of(first) == 321);
    auto oom = vigilctl(dir, {"oom-score"});
    CHECK(oom.out.find("configured 321, actual 321") != std::string::npos);
    CHECK(vigilctl(dir, {"oom-score", "2000"}).code == 64);
    CHECK(vigilctl(dir, {"oom-score", "inherit"}).code == 0);

    // Captured output.
    auto logs = vigilctl(dir, {"logs"});
    CHECK(logs.code == 0);
    CHECK(logs.out.find("serving grpc.health.v1.Health") != std::string::npos);

    // Health of vigild itself.
    CHECK(vigilctl(dir, {"health"}).code == 0);

    // Stop with a timeout, then start, then restart.
    auto stop = vigilctl(dir, {"stop", "--timeout", "5s"});
    CHECK(stop.code == 0);
    CHECK_FALSE(process_alive(first));
    auto stopped = vigilctl(dir, {"status"});
    CHECK(stopped.out.find("State: stopped") != std::string::npos);
    CHECK(stopped.code == 3); // LSB: not running
    CHECK(vigilctl(dir, {"--json", "status"}).code == 3);
    // Stop of a stopped child: done already, exit 0.
    auto stop2 = vigilctl(dir, {"stop"});
    CHECK(stop2.code == 0);
    CHECK(stop2.out.find("already stopped") != std::string::npos);
    CHECK(vigilctl(dir, {"start"}).code == 0);
    REQUIRE(wait_until(
        [&] { return vigilctl(dir, {"status"}).out.find("State: running") != std::string::npos; }));
    const pid_t second = *read_pid_file(v.state_dir() + "/child.pid");
    CHECK(second != first);
    CHECK(vigilctl(dir, {"restart"}).code == 0);
    REQUIRE(wait_until([&] {
        auto p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != second;
    }));

    // Shutdown leaving the child running: vigild exits 0, the child lives on.
    const pid_t third = *read_pid_file(v.state_dir() + "/child.pid");
    REQUIRE(wait_until(
        [&] { return vigilctl(dir, {"status"}).out.find("State: running") != std::string::npos; }));
    CHECK(vigilctl(dir, {"shutdown", "--leave-running"}).code == 0);
    REQUIRE(v.process().wait_exit() == 0);
    CHECK(process_alive(third));
    ::kill(third, SIGKILL);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(third);
    }));
    // vigild is gone: vigilctl says which socket it tried and exits 69.
    auto gone = vigilctl(dir, {"status"});
    CHECK(gone.code == 69);
    CHECK(gone.out.find(sock_of(dir)) != std::string::npos);
}

TEST_CASE("vigilctl events follows state changes until interrupted", "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, child_with_health(dir));
    REQUIRE(v.wait_log("-> running"));
    Process events({VIGILCTL_PATH, "--socket", sock_of(dir), "events"}, dir / "events.out");
    Process json({VIGILCTL_PATH, "--socket", sock_of(dir), "--json", "events"},
                 dir / "events.json");
    // Both watchers are subscribed once a restart shows up in each: restart until it does,
    // then check each saw the whole sequence of one restart.
    REQUIRE(wait_until(
        [&] {
            if (events.output().find("running -> stopping") != std::string::npos &&
                json.output().find("\"to_state\":\"stopping\"") != std::string::npos)
                return true;
            vigilctl(dir, {"restart"});
            return false;
        },
        30s));
    const size_t e0 = events.output().rfind("running -> stopping");
    const size_t j0 = json.output().rfind("\"to_state\":\"stopping\"");
    REQUIRE(events.wait_output("starting -> running", kDeadline, e0));
    REQUIRE(json.wait_output("\"kind\":\"exit\"", kDeadline, j0));
    REQUIRE(json.wait_output("\"to_state\":\"running\"", kDeadline, j0));
    CHECK(json.output().find("\"seq\":") != std::string::npos);
    events.signal(SIGINT);
    json.signal(SIGINT);
    CHECK(events.wait_exit() == 0);
    CHECK(json.wait_exit() == 0);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

// No ";" in test names: catch_discover_tests cuts a name there, and ctest then runs a
// filter that matches nothing (and "passes").
TEST_CASE("reload: a broken file keeps the old config, a changed child restarts",
          "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, child_with_health(dir));
    REQUIRE(v.wait_log("-> running"));
    const pid_t first = *v.wait_child_pid();
    const std::string good = read_file(dir / "vigild.toml");

    write_file(dir / "vigild.toml", good + "\n[child]\nbinry = 1\n");
    auto bad = vigilctl(dir, {"reload"});
    CHECK(bad.code == 1);
    CHECK(bad.out.find("vigild.toml:") != std::string::npos);
    CHECK(vigilctl(dir, {"status"}).out.find("State: running") != std::string::npos);
    CHECK(read_pid_file(v.state_dir() + "/child.pid") == first);

    // A restart setting applies live, no new child.
    write_file(dir / "vigild.toml", good + "[restart]\nbackoff_initial = \"250ms\"\n");
    auto live = vigilctl(dir, {"reload"});
    CHECK(live.code == 0);
    CHECK(read_pid_file(v.state_dir() + "/child.pid") == first);
    // `vigilctl config` shows what runs now: the reloaded file, as --check-config prints it.
    auto running = vigilctl(dir, {"config"});
    CHECK(running.code == 0);
    CHECK(running.out.find("backoff_initial = \"250ms\"") != std::string::npos);
    Process check({VIGILD_PATH, "--config", dir / "vigild.toml", "--check-config"},
                  dir / "check.out");
    REQUIRE(check.wait_exit() == 0);
    CHECK(running.out == check.output());

    // A changed child definition restarts the child, and the reply says so.
    write_file(dir / "vigild.toml", daemon_table(dir) + child_with_health(dir, {"--service", "x"}));
    auto changed = vigilctl(dir, {"--json", "reload"});
    CHECK(changed.code == 0);
    CHECK(changed.out.find("\"child_restarted\":true") != std::string::npos);
    REQUIRE(wait_until([&] {
        auto p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != first;
    }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a peer that is not root, vigild or allowed gets PERMISSION_DENIED", "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    ::chmod(dir.path().c_str(), 0755); // nobody must reach the socket file
    // A socket anyone may connect to: only the peer-credential check stands in the way.
    write_file(dir / "vigild.toml",
               "[daemon]\nstate_dir = \"" + dir / "state" + "\"\nroot_dir = \"" + dir / "root" +
                   "\"\ncontrol_socket = \"" + dir / "open.sock" +
                   "\"\ncontrol_socket_mode = \"0666\"\n" + child_with_health(dir));
    Vigild v(dir, "");
    REQUIRE(v.wait_log("-> running"));
    struct stat st;
    REQUIRE(::stat((dir / "open.sock").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0666);
    // nobody runs a copy of vigilctl in the test's own dir: the build tree may live where
    // nobody cannot reach it (a checkout under a 0700 home dir).
    const std::string ctl_copy = dir / "vigilctl";
    std::filesystem::copy_file(VIGILCTL_PATH, ctl_copy);
    REQUIRE(::chmod(ctl_copy.c_str(), 0755) == 0);
    Process p({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ctl_copy,
               "--socket", dir / "open.sock", "status"},
              dir / "nobody.out");
    REQUIRE(p.wait_exit() == 1);
    INFO(p.output());
    CHECK(p.output().find("permission denied") != std::string::npos); // PERMISSION_DENIED
    // vigild is unaffected and still answers root.
    Process root({VIGILCTL_PATH, "--socket", dir / "open.sock", "status"}, dir / "root.out");
    REQUIRE(root.wait_exit() == 0);
    CHECK(root.output().find("State: running") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("8 clients x 500 GetStatus while the child restarts, a stuck watcher delays "
          "nobody",
          "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    // A child that exits every 100ms: a steady stream of events and state changes.
    Vigild v(dir, fake_child_table({"--exit-after", "100"}) + "[health]\nkind = \"none\"\n" +
                      "[restart]\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n"
                      "start_limit_burst = 100000\n");
    REQUIRE(v.wait_log("restart #1"));
    auto restarts = [&] {
        size_t n = 0;
        const std::string log = v.log();
        for (size_t p = 0; (p = log.find("-> starting (restart #", p)) != std::string::npos; ++p)
            ++n;
        return n;
    };
    const size_t restarts_before = restarts();

    // A watcher that never reads: its stream backs up but must slow nobody.
    grpc::ClientContext stuck_ctx;
    auto s = stub(dir);
    vigil::v1::WatchEventsRequest wreq;
    auto stuck = s->WatchEvents(&stuck_ctx, wreq);

    std::atomic<int> ok{0}, failed{0};
    std::atomic<long long> worst_us{0};
    // Each client makes 500 calls, and goes on until the child has been restarted while the
    // calls ran (a fast machine answers 4000 calls between two restarts), at most 20000.
    std::atomic<bool> restarted_meanwhile{false}, clients_done{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 8; ++c)
        clients.emplace_back([&] {
            auto st = stub(dir);
            for (int i = 0; i < 20'000 && (i < 500 || !restarted_meanwhile); ++i) {
                grpc::ClientContext ctx;
                ctx.set_deadline(std::chrono::system_clock::now() + 10s);
                vigil::v1::GetStatusRequest req;
                vigil::v1::StatusReply rep;
                const auto t0 = std::chrono::steady_clock::now();
                auto status = st->GetStatus(&ctx, req, &rep);
                const long long us = std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::steady_clock::now() - t0)
                                         .count();
                long long prev = worst_us.load();
                while (us > prev && !worst_us.compare_exchange_weak(prev, us)) {
                }
                (status.ok() && !rep.state().empty() ? ok : failed)++;
            }
        });
    std::thread watch([&] {
        restarted_meanwhile =
            wait_until([&] { return clients_done || restarts() > restarts_before; }, 30s) &&
            !clients_done;
    });
    for (auto& t : clients)
        t.join();
    clients_done = true;
    watch.join();
    CHECK(ok >= 4000);
    CHECK(failed == 0);
    INFO("slowest GetStatus: " << worst_us.load() << "us");
    CHECK(worst_us.load() < 5'000'000); // generous: answered, not starved
    CHECK(restarted_meanwhile);         // the child was being restarted meanwhile
    stuck_ctx.TryCancel();
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a control socket another vigild serves is never taken over", "[e2e][control]") {
    become_subreaper();
    TempDir a, b;
    const std::string shared = a / "shared.sock";
    auto conf = [&](const TempDir& d) {
        return "[daemon]\nstate_dir = \"" + d / "state" + "\"\nroot_dir = \"" + d / "root" +
               "\"\ncontrol_socket = \"" + shared + "\"\n" + fake_child_table({}) +
               "[health]\nkind = \"none\"\n";
    };
    write_file(a / "vigild.toml", conf(a));
    write_file(b / "vigild.toml", conf(b));
    Vigild first(a, "");
    REQUIRE(first.wait_log("-> running"));
    Vigild second(b, "");
    REQUIRE(second.process().wait_exit() == 73);
    CHECK(second.log().find("served by another process") != std::string::npos);
    // The first one still answers on it.
    Process ctl({VIGILCTL_PATH, "--socket", shared, "status"}, a / "ctl.out");
    REQUIRE(ctl.wait_exit() == 0);
    first.process().signal(SIGTERM);
    REQUIRE(first.process().wait_exit() == 0);
}

TEST_CASE("a restart overtaken by a stop is answered, not left hanging", "[e2e][control]") {
    become_subreaper();
    TempDir dir;
    // The child takes 1.5s to stop, so a stop can arrive while the restart is stopping it.
    Vigild v(dir, child_with_health(dir, {"--term-delay", "1500"}));
    REQUIRE(v.wait_log("-> running"));
    Process restart({VIGILCTL_PATH, "--socket", sock_of(dir), "restart"}, dir / "restart.out");
    REQUIRE(v.wait_log("-> stopping"));
    auto stop = vigilctl(dir, {"stop"});
    CHECK(stop.code == 0);
    auto code = restart.wait_exit(10s);
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    CHECK(restart.output().find("a stop request came first") != std::string::npos);
    CHECK(vigilctl(dir, {"status"}).out.find("State: stopped") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
