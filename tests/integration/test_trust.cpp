// Trust and hardening through the real vigild (issue 7): never two children after a vigild
// SIGKILL during a restart, never a record vigild could not have written, never blinded by
// an inherited signal state, never blocked or crashed by a non-regular record, no fd
// leaked into the child where close_range is missing, reload keeps the dirs in use.
#include "harness.hpp"

#include "vigil/oom.hpp"
#include "vigil/process.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <random>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

// The live processes that carry `marker` in their environment (the children of one test:
// ctest runs other tests' children beside them).
std::vector<pid_t> live_with_env(const std::string& marker) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const pid_t pid = std::stoi(name);
        if (!process_alive(pid))
            continue;
        for (const auto& kv : environ_of(pid))
            if (kv == marker)
                out.push_back(pid);
    }
    return out;
}

// A child table whose children carry a marker unique to this test dir.
std::string marked_child(const TempDir& dir, const std::string& extra = "") {
    return fake_child_table({"--stamp-file", dir / "stamps"},
                            "env = { VIGIL_TEST_MARK = \"" + dir.path() + "\" }\n" + extra);
}

std::string marker(const TempDir& dir) {
    return "VIGIL_TEST_MARK=" + dir.path();
}

} // namespace

TEST_CASE("a vigild SIGKILLed during a restart never leaves two children (kill trials)",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    // Decoys: a stranger, and the same executable started by someone else. Neither may be
    // adopted or signalled.
    Process decoy_sleep({"/bin/sleep", "300"}, dir / "decoy-sleep.log");
    Process decoy_child({FAKE_CHILD_PATH, "--stamp-file", dir / "decoy-stamps"},
                        dir / "decoy-child.log");
    REQUIRE(wait_until([&] { return read_stamps(dir / "decoy-stamps").size() == 1; }));
    // A restart at once after each death (the back-off would only widen the trial's gaps).
    const std::string body = marked_child(dir) + kNoHealth +
                             "[restart]\nreset_after = \"1ms\"\nstart_limit_burst = 100000\n";
    int trials = 20;
    if (const char* n = std::getenv("VIGIL_KILL_TRIALS"))
        trials = std::atoi(n);
    const unsigned seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> delay_us(0, 20000);

    auto v = std::make_unique<Vigild>(dir, body, std::vector<std::string>{},
                                      std::map<std::string, std::string>{}, "vigild-0.log");
    REQUIRE(v->wait_log("-> running"));
    int by_token = 0;
    for (int trial = 1; trial <= trials; ++trial) {
        INFO("trial " << trial);
        auto before = live_with_env(marker(dir));
        REQUIRE(before.size() == 1);
        const int delay = delay_us(rng);
        ::kill(before[0], SIGKILL);
        ::usleep(static_cast<useconds_t>(delay)); // the trial's parameter, not a wait
        v->process().signal(SIGKILL);
        REQUIRE(v->process().wait_exit() == 128 + SIGKILL);
        reap_children();
        const std::string log = "vigild-" + std::to_string(trial) + ".log";
        v = std::make_unique<Vigild>(dir, body, std::vector<std::string>{},
                                     std::map<std::string, std::string>{}, log);
        REQUIRE(v->wait_log("-> running"));
        reap_children();
        INFO("delay " << delay << "us; log:\n" << v->log());
        auto after = live_with_env(marker(dir));
        CHECK(after.size() == 1);
        if (after.size() == 1)
            CHECK(read_pid_file(v->state_dir() + "/child.pid") == after[0]);
        if (v->log().find("proven by the spawn token") != std::string::npos)
            ++by_token;
    }
    WARN(by_token << " of " << trials << " trials adopted a child through its spawn token");
    v->process().signal(SIGTERM);
    REQUIRE(v->process().wait_exit() == 0);
    reap_children();
    CHECK(live_with_env(marker(dir)).empty());
    CHECK(process_alive(decoy_sleep.pid()));
    CHECK(process_alive(decoy_child.pid()));
    CHECK(read_stamps(dir / "decoy-stamps").size() == 1);
}

TEST_CASE("the state dir must be vigild's own and closed to writes by others (exit 73)",
          "[e2e][trust]") {
    TempDir dir;
    const std::string state = dir / "state";
    REQUIRE(::mkdir(state.c_str(), 0700) == 0);
    std::string expect;
    SECTION("owned by another user") {
        REQUIRE(::chown(state.c_str(), 65534, 65534) == 0);
        expect = "owned by uid 65534";
    }
    SECTION("mode 0777") {
        REQUIRE(::chmod(state.c_str(), 0777) == 0);
        expect = "has mode 0777";
    }
    SECTION("mode 1777") {
        REQUIRE(::chmod(state.c_str(), 01777) == 0);
        expect = "has mode 1777";
    }
    Vigild v(dir, marked_child(dir) + kNoHealth);
    REQUIRE(v.process().wait_exit() == 73);
    CHECK(v.log().find(expect) != std::string::npos);
    CHECK(read_stamps(dir / "stamps").empty()); // nothing was started
}

TEST_CASE("a record vigild could not have written is ignored, and its process left alone",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    // A first vigild leaves a real child and a real record behind (SIGUSR2).
    pid_t first_child = 0;
    {
        Vigild first(dir, marked_child(dir) + kNoHealth, {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        first_child = *pid;
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
    }
    REQUIRE(process_alive(first_child));
    const std::string record = dir / "state/child.state";
    TempDir other; // another instance's state dir
    std::string config_dir = dir.path(), expect;
    SECTION("owned by another user") {
        REQUIRE(::chown(record.c_str(), 65534, 65534) == 0);
        expect = "owned by uid 65534";
    }
    SECTION("writable by others") {
        REQUIRE(::chmod(record.c_str(), 0666) == 0);
        expect = "has mode 0666";
    }
    SECTION("hard-linked") {
        REQUIRE(::link(record.c_str(), (dir / "elsewhere").c_str()) == 0);
        expect = "2 hard links";
    }
    SECTION("copied from another instance") {
        REQUIRE(::mkdir((other / "state").c_str(), 0700) == 0);
        std::filesystem::copy_file(record, other / "state/child.state");
        std::filesystem::copy_file(dir / "state/child.next", other / "state/child.next");
        config_dir = other.path();
        expect = "belongs to instance " + dir / "state";
    }
    const TempDir& where = config_dir == dir.path() ? dir : other;
    {
        Vigild second(where, marked_child(dir) + kNoHealth, {}, {}, "second.log");
        REQUIRE(second.wait_log("-> running"));
        CHECK(second.log().find(expect) != std::string::npos);
        CHECK(second.log().find("adopted") == std::string::npos);
        auto own = second.wait_child_pid();
        REQUIRE(own);
        CHECK(*own != first_child);
        second.process().signal(SIGTERM);
        REQUIRE(second.process().wait_exit() == 0);
    }
    reap_children();
    CHECK(process_alive(first_child)); // never signalled
    ::kill(first_child, SIGKILL);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(first_child);
    }));
}

TEST_CASE("a FIFO or a device as the child record neither blocks nor crashes vigild",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    const std::string state = dir / "state";
    REQUIRE(::mkdir(state.c_str(), 0700) == 0);
    const std::string record = state + "/child.state";
    SECTION("FIFO") {
        REQUIRE(::mkfifo(record.c_str(), 0600) == 0);
    }
    SECTION("character device (/dev/zero)") {
        REQUIRE(::mknod(record.c_str(), S_IFCHR | 0600, ::makedev(1, 5)) == 0);
    }
    Vigild v(dir, marked_child(dir) + kNoHealth);
    REQUIRE(v.wait_log("-> running"));
    CHECK(v.log().find("not a regular file") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("an adopted child running another binary is shown with \"restart to apply\"",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    pid_t child = 0;
    {
        Vigild first(dir, marked_child(dir) + kNoHealth, {}, {}, "first.log");
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        REQUIRE(first.wait_log("-> running"));
        child = *pid;
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
    }
    // The configuration now names another binary (an upgrade installed elsewhere).
    const std::string v2 = dir / "fake_child_v2";
    std::filesystem::copy_file(FAKE_CHILD_PATH, v2);
    std::filesystem::remove(dir / "vigild.toml");
    Vigild second(dir,
                  "[child]\nbinary = \"" + v2 + "\"\nargs = [\"--stamp-file\", \"" +
                      dir / "stamps" + "\"]\n" + kNoHealth,
                  {}, {}, "second.log");
    REQUIRE(second.wait_log("-> running"));
    CHECK(second.log().find("adopted pid " + std::to_string(child)) != std::string::npos);
    CHECK(second.log().find("restart to apply") != std::string::npos);
    Process status({VIGILCTL_PATH, "--socket", second.state_dir() + "/vigild.sock", "status"},
                   dir / "status.out");
    REQUIRE(status.wait_exit() == 0);
    CHECK(status.output().find("restart to apply") != std::string::npos);
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
}

TEST_CASE("an inherited blocked or ignored SIGCHLD does not blind vigild", "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    std::function<void()> pre_exec;
    SECTION("blocked") {
        pre_exec = [] {
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGCHLD);
            ::sigprocmask(SIG_BLOCK, &set, nullptr);
        };
    }
    SECTION("ignored") {
        pre_exec = [] { ::signal(SIGCHLD, SIG_IGN); };
    }
    Vigild v(dir, marked_child(dir) + kNoHealth + "[restart]\nreset_after = \"1ms\"\n", {}, {},
             "vigild.log", pre_exec);
    auto first = v.wait_child_pid();
    REQUIRE(first);
    REQUIRE(v.wait_log("-> running"));
    ::kill(*first, SIGKILL);
    std::optional<pid_t> second;
    REQUIRE(wait_until([&] {
        second = read_pid_file(v.state_dir() + "/child.pid");
        return second && *second != *first;
    }));
    CHECK(v.log().find("killed by SIGKILL") != std::string::npos); // reaped with its status
    CHECK_FALSE(file_exists("/proc/" + std::to_string(*first)));   // no zombie left
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    CHECK_FALSE(process_alive(*second));
}

TEST_CASE("reload with other state_dir/root_dir keeps expanding the dirs in use", "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    const std::string child = "[child]\nbinary = \"" FAKE_CHILD_PATH
                              "\"\nargs = [\"--stamp-file\", \"${root_dir}/stamps\"]\n";
    Vigild v(dir, child + kNoHealth);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    write_file(dir / "vigild.toml", "[daemon]\nstate_dir = \"" + dir / "state2" +
                                        "\"\nroot_dir = \"" + dir / "root2" +
                                        "\"\nlog_level = \"debug\"\n" + child + kNoHealth);
    const size_t mark = v.log().size();
    v.process().signal(SIGHUP);
    REQUIRE(v.wait_log("configuration reloaded", kDeadline, mark));
    INFO(v.log());
    // Logged after "configuration reloaded" by the same handler; the log reaches the file
    // from vigild's writer thread, so wait for it too.
    CHECK(v.wait_log("needs a vigild restart", kDeadline, mark));
    // The child's args did not change (${root_dir} is still the dir in use): no restart.
    CHECK(v.log().find("definition changed", mark) == std::string::npos);
    CHECK(read_pid_file(v.state_dir() + "/child.pid") == pid);
    CHECK(process_alive(*pid));
    CHECK_FALSE(file_exists(dir / "root2"));
    CHECK_FALSE(file_exists(dir / "state2"));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

namespace {

// Makes close_range fail with ENOSYS, as on a kernel before 5.9 (seccomp, inherited by
// vigild across exec). Raw system calls only: it runs between fork and exec.
void without_close_range() {
    static struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    static struct sock_fprog prog = {static_cast<unsigned short>(std::size(filter)), filter};
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

} // namespace

TEST_CASE("without close_range no fd of vigild's leaks into the child", "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    // An fd vigild inherits without close-on-exec, as from a careless parent.
    const std::string leak = dir / "leaked-fd-marker";
    write_file(leak, "x");
    const int fd = ::open(leak.c_str(), O_RDONLY); // no O_CLOEXEC on purpose
    REQUIRE(fd >= 0);
    Vigild v(dir, marked_child(dir) + kNoHealth, {}, {}, "vigild.log", without_close_range);
    ::close(fd);
    auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    // vigild itself holds the marker (it inherited it); its child must not.
    bool vigild_has = false;
    for (const auto& t : fd_targets_of(v.process().pid()))
        vigild_has = vigild_has || t.find(leak) != std::string::npos;
    CHECK(vigild_has);
    for (const auto& t : fd_targets_of(*pid)) {
        INFO(t);
        CHECK(t.find(leak) == std::string::npos);
    }
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

// [serial]: it rewinds the machine's pid counter (ns_last_pid), which would hand other
// tests' pids out again while they still check them.
TEST_CASE("the OOM score is never written through a reused pid", "[e2e][trust][serial]") {
    // A process, its pidfd, then its death and reaping.
    const pid_t gone = ::fork();
    REQUIRE(gone >= 0);
    if (gone == 0) {
        ::pause();
        ::_exit(0);
    }
    auto pidfd = vigil::pidfd_open(gone);
    REQUIRE(pidfd.ok());
    ::kill(gone, SIGKILL);
    REQUIRE(::waitpid(gone, nullptr, 0) == gone);
    // A stranger under the same pid (ns_last_pid makes the kernel hand it out next; another
    // process may take it first, so try a few times).
    pid_t stranger = -1;
    for (int attempt = 0; attempt < 50 && stranger != gone; ++attempt) {
        if (stranger > 0) {
            ::kill(stranger, SIGKILL);
            ::waitpid(stranger, nullptr, 0);
        }
        write_file("/proc/sys/kernel/ns_last_pid", std::to_string(gone - 1));
        stranger = ::fork();
        REQUIRE(stranger >= 0);
        if (stranger == 0) {
            ::pause();
            ::_exit(0);
        }
    }
    REQUIRE(stranger == gone);
    const int before = oom_score_of(stranger);
    auto st = vigil::write_oom_score(gone, before + 100, pidfd->get());
    CHECK_FALSE(st.ok());
    CHECK(st.error().code == std::errc::no_such_process);
    CHECK(oom_score_of(stranger) == before);
    CHECK_FALSE(vigil::read_oom_score(gone, pidfd->get()).ok());
    ::kill(stranger, SIGKILL);
    ::waitpid(stranger, nullptr, 0);
}

TEST_CASE("a lock left held by a dead vigild's starting child is waited for, not exit 75",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    const std::string state = dir / "state";
    REQUIRE(::mkdir(state.c_str(), 0700) == 0);
    // The lock file names a vigild that is gone (a pid above pid_max can never be running:
    // a freed pid could be handed out again on a busy machine), and someone else (here:
    // the test, standing in for the child a SIGKILLed vigild was spawning) holds the lock.
    const long dead = std::stol(read_file("/proc/sys/kernel/pid_max")) + 1;
    write_file(state + "/vigild.lock", std::to_string(dead) + "\n");
    const int fd = ::open((state + "/vigild.lock").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    Vigild v(dir, marked_child(dir) + kNoHealth);
    REQUIRE(v.wait_log("which is gone; waiting up to"));
    ::close(fd); // the child's exec
    REQUIRE(v.wait_log("-> running"));
    CHECK(v.log().find("state-dir lock acquired after") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a lock held by a live vigild still means exit 75 at once", "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    Vigild first(dir, marked_child(dir) + kNoHealth, {}, {}, "first.log");
    REQUIRE(first.wait_log("-> running"));
    Vigild second(dir, marked_child(dir) + kNoHealth, {}, {}, "second.log");
    REQUIRE(second.process().wait_exit(Ms(4000)) == 75); // not after the 5s wait
    CHECK(second.log().find("another vigild (pid " + std::to_string(first.process().pid())) !=
          std::string::npos);
    first.process().signal(SIGTERM);
    REQUIRE(first.process().wait_exit() == 0);
}

TEST_CASE("an adopted child whose arguments changed is shown as it runs, with \"restart to "
          "apply\"",
          "[e2e][trust]") {
    become_subreaper();
    TempDir dir;
    {
        Vigild first(dir, marked_child(dir) + kNoHealth, {}, {}, "first.log");
        REQUIRE(first.wait_log("-> running"));
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
    }
    // The configuration now passes another argument.
    std::filesystem::remove(dir / "vigild.toml");
    Vigild second(dir,
                  fake_child_table({"--stamp-file", dir / "stamps", "--term-delay", "1"},
                                   "env = { VIGIL_TEST_MARK = \"" + dir.path() + "\" }\n") +
                      kNoHealth,
                  {}, {}, "second.log");
    REQUIRE(second.wait_log("-> running"));
    CHECK(second.log().find("arguments are not the configured ones: restart to apply") !=
          std::string::npos);
    Process status({VIGILCTL_PATH, "--socket", second.state_dir() + "/vigild.sock", "status"},
                   dir / "status.out");
    status.wait_exit();
    INFO(status.output());
    CHECK(status.output().find("--term-delay") == std::string::npos); // as it runs, not the new
    CHECK(status.output().find("Command: " FAKE_CHILD_PATH) != std::string::npos);
    second.process().signal(SIGTERM);
    REQUIRE(second.process().wait_exit() == 0);
}
