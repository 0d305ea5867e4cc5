// The start path keeps the loop free: no name-service lookup per start, no fsync, and the
// loop's lateness is measured (LoopLag) and reported in status. The child is a real
// /bin/sleep, spawned and reaped by the supervisor; the loop runs until the state the test
// waits for, with a deadline.
#include "vigil/exec_env.hpp"
#include "vigil/loop_lag.hpp"
#include "vigil/reaper.hpp"
#include "vigil/supervisor.hpp"

#include "fakes.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

std::atomic<int> g_fsyncs{0};

} // namespace

// Every fsync of this test binary (vigil_core's included) is counted, then done for real.
extern "C" int fsync(int fd) {
    g_fsyncs.fetch_add(1);
    using Fn = int (*)(int);
    static const Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "fsync"));
    return real(fd);
}

namespace {

struct StartFixture {
    StartFixture() {
        char t[] = "/tmp/vigil-start.XXXXXX";
        dir = ::mkdtemp(t);
        config = test::sleep_child_config(dir);
        std::filesystem::create_directories(config.daemon.state_dir);
        config.health.kind = HealthKind::none;
        config.restart.backoff_initial = 1ms;
    }
    ~StartFixture() {
        if (sup && sup->child_pid() > 0)
            ::kill(sup->child_pid(), SIGKILL);
        sup.reset();
        std::filesystem::remove_all(dir);
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
    }
    void make() { sup = std::make_unique<Supervisor>(io, reaper, config); }
    bool run_until(const std::function<bool()>& pred) { return test::run_io_until(io, pred); }
    // Kills the running child and waits for its replacement to be running.
    pid_t crash_and_wait_restart() {
        const pid_t pid = sup->child_pid();
        REQUIRE(pid > 0);
        ::kill(pid, SIGKILL);
        REQUIRE(run_until([&] {
            return sup->child_pid() != pid && sup->child_pid() != 0 &&
                   sup->state() == ChildState::running;
        }));
        return sup->child_pid();
    }

    std::string dir;
    asio::io_context io;
    Reaper reaper{io};
    Config config;
    std::unique_ptr<Supervisor> sup;
};

// The "Uid:" line of /proc/PID/status, whitespace folded.
std::string uid_line(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Uid:", 0) == 0) {
            std::istringstream fields(line.substr(4));
            std::string f, out;
            while (fields >> f)
                out += (out.empty() ? "" : " ") + f;
            return out;
        }
    return "";
}

} // namespace

TEST_CASE("start path: user and groups are resolved at config load and reload, never per start",
          "[unit][start]") {
    StartFixture f;
    f.config.child.user = "nobody";
    const auto before_load = name_lookup_count();
    f.make();
    const auto after_load = name_lookup_count();
    CHECK(after_load > before_load); // resolved with the configuration

    f.sup->start_initial();
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::running; }));
    CHECK(uid_line(f.sup->child_pid()) == "65534 65534 65534 65534");
    for (int i = 0; i < 3; ++i) {
        const pid_t pid = f.crash_and_wait_restart();
        CHECK(uid_line(pid) == "65534 65534 65534 65534");
    }
    // Four spawns, not one lookup on the loop.
    CHECK(name_lookup_count() == after_load);

    // A reload resolves the names again (they may point elsewhere now), and the next start
    // uses the new resolution.
    Config next = f.config;
    next.child.user = "daemon";
    CHECK(f.sup->reload(next)); // a new user restarts the child
    CHECK(name_lookup_count() > after_load);
    REQUIRE(f.run_until([&] {
        return f.sup->state() == ChildState::running && f.sup->child_pid() > 0 &&
               uid_line(f.sup->child_pid()) == "1 1 1 1";
    }));
}

TEST_CASE("start path: a user that cannot be resolved at load fails each start, a reload fixes it",
          "[unit][start]") {
    StartFixture f;
    f.config.child.user = "no-such-user-vigil";
    f.make();
    std::optional<int> fatal;
    f.sup->set_fatal_handler([&](int code, const std::string&) { fatal = code; });
    f.sup->start_initial();
    // As an exec failure on vigild's first start: fatal 69 at once, nothing spawned.
    REQUIRE(fatal == 69);
    CHECK(f.sup->child_pid() == 0);

    Config fixed = f.config;
    fixed.child.user = "nobody";
    f.sup->reload(fixed);
    f.sup->start_command([](const CommandOutcome&) {});
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::running; }));
    CHECK(uid_line(f.sup->child_pid()) == "65534 65534 65534 65534");
}

TEST_CASE("start path: the child's config file is written without an fsync on the loop",
          "[unit][start]") {
    StartFixture f;
    f.config.child.config_file = "child.toml";
    f.config.child.config.insert("version", 2);
    f.make();
    const int before = g_fsyncs.load();
    f.sup->start_initial();
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::running; }));
    std::ifstream in(f.config.daemon.state_dir + "/child.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("version = 2") != std::string::npos);

    // A reload that changes it: rewritten before the new child starts, still no fsync.
    Config next = f.config;
    next.child.config.insert_or_assign("version", 3);
    CHECK(f.sup->reload(next));
    REQUIRE(f.run_until([&] {
        std::ifstream again(f.config.daemon.state_dir + "/child.toml");
        std::string t((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
        return t.find("version = 3") != std::string::npos && f.sup->state() == ChildState::running;
    }));
    CHECK(g_fsyncs.load() == before);
}

TEST_CASE("start path: status reports the loop lag of the timers the loop runs",
          "[unit][start][loop-lag]") {
    StartFixture f;
    f.make();
    f.sup->start_initial();
    REQUIRE(f.run_until([&] { return f.sup->state() == ChildState::running; }));
    const auto before = f.sup->status().loop_lag.samples;
    // Each restart waits on the back-off timer (0 ms for the first), which records how late
    // the loop ran it.
    for (int i = 0; i < 3; ++i)
        f.crash_and_wait_restart();
    const auto lag = f.sup->status().loop_lag;
    CHECK(lag.samples > before);
    CHECK(lag.window == std::min<std::uint64_t>(lag.samples, kLoopLagWindow));
    CHECK(lag.p50_us <= lag.p99_us);
    CHECK(lag.p99_us <= lag.max_us);
    CHECK(lag.max_us <= lag.max_ever_us);
}
