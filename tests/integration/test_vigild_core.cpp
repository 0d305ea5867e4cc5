// vigild's core behaviour through the real binary: spawn, restart and back-off, start
// limit, stop escalation, adoption after a vigild crash, refusal to adopt a stranger, OOM
// scores, the child's environment, the state-dir lock and config errors.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <sstream>
#include <sys/stat.h>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

std::string stamp_args(const TempDir& dir) {
    return dir / "stamps";
}

bool has_line(const std::vector<std::string>& v, const std::string& prefix) {
    return std::any_of(v.begin(), v.end(),
                       [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
}

bool cap_sys_resource() {
    std::string status = read_file("/proc/self/status");
    auto pos = status.find("CapEff:");
    if (pos == std::string::npos)
        return false;
    unsigned long long caps = std::stoull(status.substr(pos + 7), nullptr, 16);
    return (caps >> 24) & 1; // CAP_SYS_RESOURCE
}

} // namespace

TEST_CASE("vigild spawns the child, writes its files, and stops it on SIGTERM", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("state starting -> running"));
    REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
    CHECK(process_alive(*pid));

    struct stat st;
    REQUIRE(::stat(v.state_dir().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    // The child's config file: 0600, placeholders expanded, passed with --config.
    const std::string conf = v.state_dir() + "/containerd.toml";
    REQUIRE(::stat(conf.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    std::string text = read_file(conf);
    CHECK(text.find("root = \"" + dir / "root" + "/containerd\"") != std::string::npos);
    CHECK(text.find("${") == std::string::npos);
    CHECK(read_file("/proc/" + std::to_string(*pid) + "/cmdline").find(conf) != std::string::npos);
    // The record beside the pid file names the process.
    std::string record = read_file(v.state_dir() + "/child.state");
    CHECK(record.find("pid=" + std::to_string(*pid) + "\n") != std::string::npos);
    CHECK(record.find("exe=" FAKE_CHILD_PATH "\n") != std::string::npos);
    // Nothing of vigild's leaks into the child beyond stdio.
    for (const auto& fd : fd_targets_of(*pid)) {
        INFO(fd);
        CHECK(fd.find("vigild.lock") == std::string::npos);
        CHECK(fd.find("pidfd") == std::string::npos);
    }
    CHECK(read_stamps(stamp_args(dir)).size() == 1);

    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    CHECK_FALSE(process_alive(*pid));
    CHECK_FALSE(file_exists(v.state_dir() + "/child.pid"));
    CHECK_FALSE(file_exists(v.state_dir() + "/child.state"));
}

TEST_CASE("an exiting child is restarted with exponential back-off", "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table({"--stamp-file", stamp_args(dir), "--exit-after",
                                               "150", "--exit-code", "3"}) +
                             kNoHealth +
                             "[restart]\nbackoff_initial = \"300ms\"\nbackoff_max = \"600ms\"\n"
                             "reset_after = \"1h\"\n";
    Vigild v(dir, body);
    REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() >= 5; }, 30s));
    auto s = read_stamps(stamp_args(dir));
    auto gap_ms = [&](size_t i) { return (s[i + 1].ns - s[i].ns) / 1'000'000; };
    // Each child runs 150ms, then waits: at once (after a healthy run), 300, 600, 600 (max).
    const long expected_delay[] = {0, 300, 600, 600};
    for (size_t i = 0; i < 4; ++i) {
        INFO("gap " << i << " = " << gap_ms(i) << "ms");
        CHECK(gap_ms(i) >= 150 + expected_delay[i]);
        CHECK(gap_ms(i) < 150 + expected_delay[i] + 2000);
        CHECK(s[i].pid != s[i + 1].pid);
    }
    CHECK(v.log().find("exited: exit code 3") != std::string::npos);
    CHECK(v.log().find("restarting in 300ms") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a crash loop ends in failed and vigild stays up", "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string body =
        fake_child_table({"--stamp-file", stamp_args(dir), "--exit-code", "1"}) + kNoHealth +
        "[restart]\nbackoff_initial = \"10ms\"\nbackoff_max = \"40ms\"\n"
        "start_limit_burst = 4\nstart_limit_interval = \"1m\"\n";
    Vigild v(dir, body);
    REQUIRE(v.wait_log("-> failed"));
    CHECK(v.log().find("start limit hit: more than 4 starts within 1m") != std::string::npos);
    CHECK(read_stamps(stamp_args(dir)).size() == 4);
    CHECK_FALSE(v.process().exited());
    CHECK(process_alive(v.process().pid()));
    CHECK_FALSE(file_exists(v.state_dir() + "/child.pid"));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    CHECK(read_stamps(stamp_args(dir)).size() == 4);
}

TEST_CASE("restart policy never leaves an exited child stopped", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir), "--exit-after", "50"}) +
                      kNoHealth + "[restart]\npolicy = \"never\"\n");
    REQUIRE(v.wait_log("-> stopped"));
    CHECK(v.log().find("restart policy never does not restart it") != std::string::npos);
    CHECK(read_stamps(stamp_args(dir)).size() == 1);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a child that ignores the stop signal is killed after stop_timeout", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--ignore-term", "--signal-file", dir / "signals",
                                    "--stamp-file", stamp_args(dir)},
                                   "stop_timeout = \"700ms\"\n") +
                      kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 700ms);
    CHECK_FALSE(process_alive(*pid));
    CHECK(read_file(dir / "signals").find("SIGTERM") != std::string::npos);
    CHECK(v.log().find("did not exit within 700ms of SIGTERM; sending SIGKILL") !=
          std::string::npos);
    CHECK(v.log().find("killed by SIGKILL") != std::string::npos);
}

TEST_CASE("a new vigild adopts the child a killed vigild left behind", "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth;
    pid_t child = 0;
    {
        Vigild first(dir, body, {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
        child = *pid;
        first.process().signal(SIGKILL);
        REQUIRE(first.process().wait_exit() == 128 + SIGKILL);
    }
    REQUIRE(process_alive(child));
    Vigild second(dir, body, {}, {}, "second.log");
    REQUIRE(second.wait_log("-> running"));
    CHECK(second.log().find("adopted pid " + std::to_string(child)) != std::string::npos);
    CHECK(read_pid_file(second.state_dir() + "/child.pid") == child);
    CHECK(read_stamps(stamp_args(dir)).size() == 1); // no second child
    // The adopted child's exit is noticed (through its pidfd) and it is restarted.
    ::kill(child, SIGKILL);
    REQUIRE(second.wait_log("exit status unknown"));
    REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 2; }));
    reap_children();
    auto fresh = second.wait_child_pid();
    REQUIRE(wait_until([&] {
        fresh = read_pid_file(second.state_dir() + "/child.pid");
        return fresh && *fresh != child;
    }));
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
    CHECK_FALSE(process_alive(*fresh));
}

TEST_CASE("SIGUSR2 leaves the child running for the next vigild, which stops it", "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth;
    pid_t child = 0;
    {
        Vigild first(dir, body, {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
        child = *pid;
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
        CHECK(first.log().find("leaving child pid") != std::string::npos);
    }
    REQUIRE(process_alive(child));
    CHECK(file_exists(dir / "state/child.state"));
    Vigild second(dir, body, {}, {}, "second.log");
    REQUIRE(second.wait_log("adopted pid " + std::to_string(child)));
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(child);
    }));
    CHECK(read_stamps(stamp_args(dir)).size() == 1);
}

TEST_CASE("a record pointing at an unrelated process is not adopted and that process is "
          "left alone",
          "[e2e]") {
    become_subreaper();
    TempDir dir;
    // An unrelated long-running process, started by the test.
    Process stranger({"/bin/sleep", "300"}, dir / "sleep.log");
    REQUIRE(wait_until([&] { return process_alive(stranger.pid()); }));
    const std::string pid = std::to_string(stranger.pid());
    std::string stat = read_file("/proc/" + pid + "/stat");
    std::string boot = read_file("/proc/sys/kernel/random/boot_id");
    boot.pop_back();
    // Field 22 of stat: count from the last ')'.
    auto rest = stat.substr(stat.rfind(')') + 2);
    std::istringstream fields(rest);
    std::string f;
    for (int i = 3; i <= 22; ++i)
        fields >> f;
    const std::string start_time = f;

    SECTION("same pid, start time and boot, different executable") {
        ::mkdir((dir / "state").c_str(), 0700);
        write_file(dir / "state/child.pid", pid + "\n");
        write_file(dir / "state/child.state",
                   "instance=" + dir / "state" + "\npid=" + pid + "\nstart_time=" + start_time +
                       "\nboot_id=" + boot + "\nexe=" FAKE_CHILD_PATH "\nuid=0\ntoken=none\n");
        Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
        REQUIRE(v.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
        CHECK(v.log().find("runs /usr/bin/sleep, not the recorded") != std::string::npos);
        auto child = v.wait_child_pid();
        REQUIRE(child);
        CHECK(*child != stranger.pid());
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    SECTION("same pid, other start time (a reused pid)") {
        ::mkdir((dir / "state").c_str(), 0700);
        write_file(dir / "state/child.state", "instance=" + dir / "state" + "\npid=" + pid +
                                                  "\nstart_time=1\nboot_id=" + boot +
                                                  "\nexe=/usr/bin/sleep\nuid=0\ntoken=none\n");
        Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
        REQUIRE(v.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
        CHECK(v.log().find("was reused") != std::string::npos);
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    SECTION("a garbled record") {
        ::mkdir((dir / "state").c_str(), 0700);
        write_file(dir / "state/child.state", "pid=" + pid + "\nthis is not a record\n");
        Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
        REQUIRE(v.wait_log("-> running"));
        REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
        CHECK(v.log().find("garbled child record") != std::string::npos);
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    CHECK(process_alive(stranger.pid())); // never signalled
    CHECK(read_stamps(stamp_args(dir)).size() == 1);
}

TEST_CASE("a dead recorded pid is not adopted", "[e2e]") {
    become_subreaper();
    TempDir dir;
    ::mkdir((dir / "state").c_str(), 0700);
    std::string boot = read_file("/proc/sys/kernel/random/boot_id");
    boot.pop_back();
    // pid_max is at most 4194304: this pid cannot exist.
    write_file(dir / "state/child.state", "instance=" + dir / "state" +
                                              "\npid=4194305\nstart_time=5\nboot_id=" + boot +
                                              "\nexe=" FAKE_CHILD_PATH "\nuid=0\ntoken=none\n");
    Vigild v(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
    REQUIRE(v.wait_log("-> running"));
    CHECK(v.log().find("recorded child pid 4194305 is gone") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("oom_score_adj is applied to the child", "[e2e]") {
    become_subreaper();
    TempDir dir;
    SECTION("a fixed positive score") {
        Vigild v(dir, fake_child_table({}, "oom_score_adj = 321\n") + kNoHealth);
        auto pid = v.wait_child_pid();
        REQUIRE(pid);
        CHECK(oom_score_of(*pid) == 321);
        REQUIRE(v.wait_log("configured 321, actual 321"));
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    SECTION("a negative score without CAP_SYS_RESOURCE is a clear warning, not fatal") {
        Vigild v(dir, fake_child_table({}, "oom_score_adj = -500\n") + kNoHealth);
        auto pid = v.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(v.wait_log("-> running"));
        if (cap_sys_resource()) {
            CHECK(oom_score_of(*pid) == -500);
        } else {
            CHECK(v.log().find("failed to set oom_score_adj -500") != std::string::npos);
            CHECK(v.log().find("CAP_SYS_RESOURCE") != std::string::npos);
            CHECK(oom_score_of(*pid) != -500);
        }
        CHECK(process_alive(*pid));
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
    SECTION("inherit follows vigild's own score, also when it changes") {
        Vigild v(dir, fake_child_table({}, "oom_score_adj = \"inherit\"\n") + kNoHealth,
                 {"--oom-score-adjust", "inherit"});
        auto pid = v.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(v.wait_log("-> running"));
        const int base = oom_score_of(v.process().pid());
        CHECK(oom_score_of(*pid) == base);
        const int raised = std::min(base + 111, 1000);
        // Raising a score needs no capability.
        write_file("/proc/" + std::to_string(v.process().pid()) + "/oom_score_adj",
                   std::to_string(raised));
        CHECK(wait_until([&] { return oom_score_of(*pid) == raised; }));
        CHECK(v.wait_log("applying it to child pid"));
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
}

TEST_CASE("the child's environment drops systemd's variables and adds [child] env", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({}, "[child.env]\nVIGIL_TEST_VAR = \"hello\"\n") + kNoHealth, {},
             {{"NOTIFY_SOCKET", dir / "nonexistent.sock"},
              {"LISTEN_FDS", "2"},
              {"LISTEN_PID", "1"},
              {"WATCHDOG_PID", "1"},
              {"KEEP_ME", "yes"}});
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    auto env = environ_of(*pid);
    CHECK_FALSE(has_line(env, "NOTIFY_SOCKET="));
    CHECK_FALSE(has_line(env, "LISTEN_FDS="));
    CHECK_FALSE(has_line(env, "LISTEN_PID="));
    CHECK_FALSE(has_line(env, "WATCHDOG_PID="));
    CHECK(has_line(env, "KEEP_ME=yes"));
    CHECK(has_line(env, "VIGIL_TEST_VAR=hello"));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a second vigild on the same state dir exits 75 and names the holder", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild first(dir, fake_child_table({"--stamp-file", stamp_args(dir)}) + kNoHealth);
    REQUIRE(first.wait_log("-> running"));
    REQUIRE(wait_until([&] { return read_stamps(stamp_args(dir)).size() == 1; }));
    Vigild second(dir, "", {}, {}, "second.log");
    REQUIRE(second.process().wait_exit() == 75);
    CHECK(second.log().find("another vigild (pid " + std::to_string(first.process().pid()) + ")") !=
          std::string::npos);
    CHECK(read_stamps(stamp_args(dir)).size() == 1);
    first.process().signal(SIGTERM);
    REQUIRE(first.process().wait_exit() == 0);
}

TEST_CASE("an exec failure on the first start exits 69 at once", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, "[child]\nbinary = \"" + dir / "containerdx" + "\"\n" + kNoHealth);
    REQUIRE(v.process().wait_exit() == 69);
    CHECK(v.log().find("failed to exec " + dir / "containerdx" + ": No such file or directory") !=
          std::string::npos);
}

TEST_CASE("each bad config exits 78 with FILE:LINE:COL and starts nothing", "[e2e]") {
    become_subreaper();
    struct Case {
        const char* body;
        const char* expect;
    };
    const Case cases[] = {
        {"[child]\nbinry = \"x\"\n", ":2:1: child.binry: unknown key"},
        {"[helth]\n", ":1:2: helth: unknown key"},
        {"[child]\noom_score_adj = 1001\n", "child.oom_score_adj"},
        {"[child]\nstop_signal = \"SIGFOO\"\n", "child.stop_signal"},
        {"[health]\ninterval = \"0s\"\n", "health.interval"},
        {"[health]\ntimeout = \"3 lightyears\"\n", "health.timeout"},
        {"[restart]\npolicy = \"sometimes\"\n", "restart.policy"},
        {"[child]\nargs = \"--debug\"\n", "child.args"},
        {"[child\n", ":1:"},
    };
    for (const auto& c : cases) {
        TempDir dir;
        const std::string conf = dir / "vigild.toml";
        write_file(conf, c.body);
        Process p({VIGILD_PATH, "--config", conf, "--state-dir", dir / "state", "--child-binary",
                   FAKE_CHILD_PATH},
                  dir / "out.log");
        INFO(c.body);
        REQUIRE(p.wait_exit() == 78);
        std::string out = p.output();
        INFO(out);
        CHECK(out.find(conf + ":") != std::string::npos);
        CHECK(out.find(c.expect) != std::string::npos);
        CHECK_FALSE(file_exists(dir / "state"));
    }
}

TEST_CASE("command line: --help, --version, bad flags, --check-config", "[e2e]") {
    TempDir dir;
    {
        Process p({VIGILD_PATH, "--help"}, dir / "help.log");
        REQUIRE(p.wait_exit() == 0);
        for (const char* flag :
             {"--config", "--state-dir", "--root-dir", "--log-level", "--oom-score-adjust",
              "--child-binary", "--control-socket", "--health-address", "--no-health",
              "--check-config", "--version", "Exit status"})
            CHECK(p.output().find(flag) != std::string::npos);
    }
    {
        Process p({VIGILD_PATH, "--version"}, dir / "version.log");
        REQUIRE(p.wait_exit() == 0);
        CHECK(p.output().rfind("vigild ", 0) == 0);
    }
    {
        Process p({VIGILD_PATH, "--no-such-flag"}, dir / "bad.log");
        REQUIRE(p.wait_exit() == 64);
        CHECK(p.output().find("no-such-flag") != std::string::npos);
    }
    {
        Process p({VIGILD_PATH, "--oom-score-adjust", "-2000"}, dir / "bad-oom.log");
        REQUIRE(p.wait_exit() == 64);
    }
    {
        // A bare word before "--" is a mistake, not a child argument.
        Process p({VIGILD_PATH, "check-config"}, dir / "bare.log");
        REQUIRE(p.wait_exit() == 64);
        CHECK(p.output().find("unexpected argument 'check-config'") != std::string::npos);
    }
    {
        Process p({VIGILD_PATH, "--config", dir / "missing.toml"}, dir / "missing.log");
        REQUIRE(p.wait_exit() == 78);
    }
    {
        Process p({VIGILD_PATH, "--check-config", "--state-dir", dir / "s", "--oom-score-adjust",
                   "250", "--", "--foo", "bar"},
                  dir / "check.log");
        REQUIRE(p.wait_exit() == 0);
        std::string out = p.output();
        CHECK(out.find("state_dir = \"" + dir / "s" + "\"") != std::string::npos);
        CHECK(out.find("oom_score_adj = 250") != std::string::npos);
        CHECK(out.find("\"--foo\"") != std::string::npos);
        CHECK(out.find("address = \"unix://" + dir / "s" + "/containerd.sock\"") !=
              std::string::npos);
        CHECK_FALSE(file_exists(dir / "s"));
    }
}
