// What an operator sees (issue 9 #3, #7): status never shows old data as current, a stop
// in back-off does not report the earlier crash as its result, and events say what
// happened (a failed oom-score once, a kill at all, states without "state state").
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <sys/stat.h>

using namespace vt;

namespace {

std::string ctl(const TempDir& dir, const Vigild& v, const std::vector<std::string>& args,
                const std::string& out, int* code = nullptr) {
    std::vector<std::string> argv{VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, dir / out);
    auto c = p.wait_exit();
    if (code)
        *code = c.value_or(-1);
    return p.output();
}

} // namespace

TEST_CASE("status in back-off: no stale health, when the next start comes; stop says no child "
          "ran",
          "[e2e][operator]") {
    become_subreaper();
    TempDir dir;
    // Healthy for a while, then it crashes; the restart waits 30s (back-off).
    Vigild v(dir, fake_child_table({"--socket", dir / "child.sock", "--crash-after", "600"}) +
                      "[health]\naddress = \"unix://" + dir / "child.sock" +
                      "\"\ninterval = \"100ms\"\n[restart]\nreset_after = \"1h\"\n"
                      "backoff_initial = \"30s\"\nbackoff_max = \"30s\"\n");
    REQUIRE(v.wait_log("-> running"));
    // First death after a healthy run: restarted at once; the second waits 30s.
    REQUIRE(v.wait_log("restart #1"));
    REQUIRE(v.wait_log("restarting in 30s"));
    const std::string status = ctl(dir, v, {"status"}, "status.out");
    INFO(status);
    CHECK(status.find("PID: none") != std::string::npos);
    CHECK(status.find("SERVING") == std::string::npos); // no health without a child
    CHECK(status.find("Next start: ") != std::string::npos);
    CHECK(status.find("(in 2") != std::string::npos); // in 2Xs
    int code = 0;
    const std::string stop = ctl(dir, v, {"stop"}, "stop.out", &code);
    CHECK(code == 0);
    CHECK(stop.find("no child was running") != std::string::npos);
    CHECK(stop.find("killed by") == std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("events: a failed oom-score once, a kill, state lines without \"state state\"",
          "[e2e][operator]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}, "oom_score_adj = 300\n") +
                      "[health]\nkind = \"none\"\n");
    REQUIRE(v.wait_log("-> running"));
    // -n 0: only what happens from now on (not the start's oom event).
    Process events({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "events", "-n", "0"},
                   dir / "events.out");
    REQUIRE(wait_until([&] { return file_exists(dir / "events.out"); }));
    REQUIRE(v.wait_log("oom_score_adj of child pid"));
    // Make sure the watcher is subscribed: a reload event must reach it.
    REQUIRE(wait_until([&] {
        ctl(dir, v, {"reload"}, "reload.out");
        return events.wait_output("reload:", std::chrono::milliseconds(500));
    }));
    int code = 0;
    ctl(dir, v, {"oom-score", "-100"}, "oom.out", &code); // needs CAP_SYS_RESOURCE: fails
    CHECK(code == 1);
    ctl(dir, v, {"kill", "SIGCONT"}, "kill.out", &code);
    CHECK(code == 0);
    REQUIRE(events.wait_output("signal: sent SIGCONT"));
    const std::string out = events.output();
    INFO(out);
    size_t oom_events = 0;
    for (size_t p = out.find(" oom: "); p != std::string::npos; p = out.find(" oom: ", p + 1))
        ++oom_events;
    CHECK(oom_events == 1);
    CHECK(out.find("failed to set oom_score_adj -100") != std::string::npos);
    CHECK(out.find("it stays 300") != std::string::npos);
    CHECK(out.find("state: state") == std::string::npos);
    events.signal(SIGTERM);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("logs -n N shows the last N lines; without capture, logs says where output went",
          "[e2e][operator]") {
    become_subreaper();
    TempDir dir;
    {
        Vigild v(dir,
                 fake_child_table({"--print-env"}, "output = \"capture\"\n") +
                     "[health]\nkind = \"none\"\n",
                 {}, {}, "capture.log");
        REQUIRE(v.wait_log("-> running"));
        REQUIRE(wait_until(
            [&] { return ctl(dir, v, {"logs"}, "all.out").find("env ") != std::string::npos; }));
        const std::string all = ctl(dir, v, {"logs"}, "all.out");
        const auto all_lines = std::count(all.begin(), all.end(), '\n');
        REQUIRE(all_lines >= 3);
        int code = 0;
        const std::string two = ctl(dir, v, {"logs", "-n", "2"}, "two.out", &code);
        CHECK(code == 0);
        CHECK(std::count(two.begin(), two.end(), '\n') == 2);
        CHECK(all.size() >= two.size());
        CHECK(all.substr(all.size() - two.size()) == two); // the last two
        ctl(dir, v, {"logs", "-n", "0"}, "zero.out", &code);
        CHECK(code == 64);
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    TempDir plain;
    Vigild v(plain, fake_child_table({}) + "[health]\nkind = \"none\"\n");
    REQUIRE(v.wait_log("-> running"));
    int code = 0;
    const std::string out = ctl(plain, v, {"logs"}, "logs.out", &code);
    CHECK(code == 1);
    CHECK(out.find("journalctl -u vigild") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("messages say what happened: a socket this user may not open; a stream ended by "
          "vigild's shutdown",
          "[e2e][operator]") {
    become_subreaper();
    TempDir dir;
    ::chmod(dir.path().c_str(), 0755);
    // The socket is vigild's usual one: mode 0660, root's group; nobody may not connect.
    write_file(dir / "vigild.toml", "[daemon]\nstate_dir = \"" + dir / "state" +
                                        "\"\nroot_dir = \"" + dir / "root" +
                                        "\"\ncontrol_socket = \"" + dir / "ctl.sock" + "\"\n" +
                                        fake_child_table({}) + "[health]\nkind = \"none\"\n");
    Vigild v(dir, "");
    REQUIRE(v.wait_log("-> running"));
    const std::string ctl_copy = dir / "vigilctl";
    std::filesystem::copy_file(VIGILCTL_PATH, ctl_copy);
    REQUIRE(::chmod(ctl_copy.c_str(), 0755) == 0);
    Process nobody({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    ctl_copy, "--socket", dir / "ctl.sock", "status"},
                   dir / "nobody.out");
    REQUIRE(nobody.wait_exit() == 69);
    INFO(nobody.output());
    CHECK(nobody.output().find("permission denied on " + dir / "ctl.sock") != std::string::npos);
    CHECK(nobody.output().find("is vigild running?") == std::string::npos);

    // A watcher whose stream vigild ends by shutting down is told so.
    Process events({VIGILCTL_PATH, "--socket", dir / "ctl.sock", "events"}, dir / "events.out");
    REQUIRE(wait_until([&] {
        Process r({VIGILCTL_PATH, "--socket", dir / "ctl.sock", "reload"}, dir / "reload.out");
        r.wait_exit();
        return events.wait_output("reload:", std::chrono::milliseconds(500));
    }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    REQUIRE(events.wait_exit() == 69);
    INFO(events.output());
    CHECK(events.output().find("vigild shut down; the stream ended") != std::string::npos);
    CHECK(events.output().find("No such file or directory") == std::string::npos);
}

TEST_CASE("events replays the latest events before following", "[e2e][operator]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({}) + "[health]\nkind = \"none\"\n");
    REQUIRE(v.wait_log("-> running"));
    // What happened before the watcher connected: the start.
    Process replayed({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "events"},
                     dir / "replayed.out");
    REQUIRE(replayed.wait_output("stopped -> starting"));
    CHECK(replayed.wait_output("starting -> running"));
    Process none({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "events", "-n", "0"},
                 dir / "none.out");
    Process two({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "events", "-n", "1"},
                dir / "two.out");
    REQUIRE(two.wait_output("#"));
    // A new event reaches all three; -n 0 saw nothing from before.
    REQUIRE(wait_until([&] {
        Process r({VIGILCTL_PATH, "--socket", v.state_dir() + "/vigild.sock", "reload"},
                  dir / "reload.out");
        r.wait_exit();
        return none.wait_output("reload:", std::chrono::milliseconds(500));
    }));
    CHECK(none.output().find("stopped -> starting") == std::string::npos);
    const std::string one = two.output();
    CHECK(one.find("stopped -> starting") == std::string::npos); // only the latest one
    for (Process* p : {&replayed, &none, &two})
        p->signal(SIGTERM);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
