// Health kinds beyond grpc (issue 11, item 3): http, tcp and exec, each with a child that
// goes healthy, then unhealthy, then is killed and restarted.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <dirent.h>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace vt;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPython = "/usr/bin/python3";

// A loopback port nobody listens on now.
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string child_table(const std::string& binary, const std::vector<std::string>& args) {
    std::string list;
    for (const auto& a : args)
        list += (list.empty() ? "\"" : ", \"") + a + "\"";
    return "[child]\nbinary = \"" + binary + "\"\nargs = [" + list +
           "]\nconfig_file = \"\"\nlog_level_flag = \"\"\n";
}

const std::string kFast = "interval = \"100ms\"\ntimeout = \"500ms\"\nfailure_threshold = 2\n"
                          "startup_timeout = \"10s\"\n";
const std::string kRestart = "[restart]\nbackoff_initial = \"50ms\"\nbackoff_max = \"100ms\"\n";

pid_t new_child(Vigild& v, pid_t old) {
    std::optional<pid_t> p;
    wait_until([&] {
        p = read_pid_file(v.state_dir() + "/child.pid");
        return p && *p != old;
    });
    return p.value_or(0);
}

// The children of `parent` that are zombies.
int zombies_of(pid_t parent) {
    int n = 0;
    DIR* d = ::opendir("/proc");
    while (const dirent* e = d ? ::readdir(d) : nullptr) {
        const std::string stat = read_file(std::string("/proc/") + e->d_name + "/stat");
        const auto close = stat.rfind(')');
        if (close == std::string::npos)
            continue;
        char state = 0;
        int ppid = 0;
        if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent &&
            state == 'Z')
            ++n;
    }
    if (d)
        ::closedir(d);
    return n;
}

} // namespace

TEST_CASE("health kind http: 200-399 healthy, a 404 fails, the child is restarted",
          "[e2e][health_kinds]") {
    become_subreaper();
    TempDir dir;
    const int port = free_port();
    REQUIRE(::mkdir((dir / "www").c_str(), 0755) == 0);
    write_file(dir / "www/healthz", "ok\n");
    Vigild v(dir, child_table(kPython, {"-m", "http.server", std::to_string(port), "--bind",
                                        "127.0.0.1", "--directory", dir / "www"}) +
                      "[health]\nkind = \"http\"\naddress = \"http://127.0.0.1:" +
                      std::to_string(port) + "/healthz\"\n" + kFast + kRestart);
    REQUIRE(v.wait_log("-> running (healthy: SERVING"));
    const pid_t first = *v.wait_child_pid();
    const std::size_t mark = v.log().size();
    ::unlink((dir / "www/healthz").c_str());
    REQUIRE(v.wait_log("consecutive failed health checks, last: NOT_SERVING: HTTP 404", kDeadline,
                       mark));
    write_file(dir / "www/healthz", "ok\n");
    const pid_t second = new_child(v, first);
    REQUIRE(second != 0);
    REQUIRE(v.wait_log("-> running (healthy: SERVING", kDeadline, mark));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("health kind tcp: an accepted connection is healthy, a refused one fails",
          "[e2e][health_kinds]") {
    become_subreaper();
    TempDir dir;
    const int port = free_port();
    // Listens for a second, then closes its socket but lives on: a child that stopped
    // serving.
    const std::string script = "import socket,time\n"
                               "s=socket.socket()\n"
                               "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                               "s.bind(('127.0.0.1'," +
                               std::to_string(port) +
                               "))\n"
                               "s.listen(16)\n"
                               "time.sleep(1)\n"
                               "s.close()\n"
                               "time.sleep(3600)\n";
    write_file(dir / "serve.py", script);
    Vigild v(dir, child_table(kPython, {dir / "serve.py"}) +
                      "[health]\nkind = \"tcp\"\naddress = \"127.0.0.1:" + std::to_string(port) +
                      "\"\n" + kFast + kRestart);
    REQUIRE(v.wait_log("-> running (healthy: SERVING"));
    const pid_t first = *v.wait_child_pid();
    REQUIRE(v.wait_log("consecutive failed health checks, last: connection refused"));
    const pid_t second = new_child(v, first);
    REQUIRE(second != 0);
    CHECK_FALSE(process_alive(first));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("health kind exec: exit 0 is healthy, another exit fails, a slow one is killed",
          "[e2e][health_kinds]") {
    become_subreaper();
    TempDir dir;
    write_file(dir / "ok", "");
    Vigild v(dir, fake_child_table({}) +
                      "[health]\nkind = \"exec\"\ncommand = [\"test\", \"-e\", \"" + dir / "ok" +
                      "\"]\n" + kFast + kRestart);
    REQUIRE(v.wait_log("-> running (healthy: SERVING"));
    const pid_t first = *v.wait_child_pid();
    const std::size_t mark = v.log().size();
    ::unlink((dir / "ok").c_str());
    REQUIRE(v.wait_log("consecutive failed health checks, last: NOT_SERVING: command: exit code 1",
                       kDeadline, mark));
    write_file(dir / "ok", "");
    REQUIRE(new_child(v, first) != 0);
    REQUIRE(v.wait_log("-> running (healthy: SERVING", kDeadline, mark));
    // The commands are reaped as they end (one may be a zombie for the instant before its
    // SIGCHLD is handled, never for long).
    CHECK(wait_until([&] { return zombies_of(v.process().pid()) == 0; }));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);

    // A command that outlives the timeout is killed (with what it started), and reaped.
    TempDir slow;
    Vigild w(slow, fake_child_table({}) +
                       "[health]\nkind = \"exec\"\ncommand = [\"sleep\", \"30\"]\n"
                       "interval = \"100ms\"\ntimeout = \"200ms\"\nfailure_threshold = 2\n"
                       "startup_timeout = \"1s\"\n[restart]\npolicy = \"never\"\n");
    REQUIRE(w.wait_log("command: no answer within 200ms, killed"));
    REQUIRE(wait_until([&] {
        // Every sleep it started is gone, none left a zombie.
        int sleeps = 0;
        DIR* d = ::opendir("/proc");
        while (const dirent* e = d ? ::readdir(d) : nullptr) {
            const std::string stat = read_file(std::string("/proc/") + e->d_name + "/stat");
            if (stat.find("(sleep)") == std::string::npos)
                continue;
            const auto close = stat.rfind(')');
            char state = 0;
            int ppid = 0;
            if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 &&
                ppid == w.process().pid())
                ++sleeps;
        }
        if (d)
            ::closedir(d);
        return sleeps == 0 && zombies_of(w.process().pid()) == 0;
    }));
    // Never healthy on its first start: vigild stops the child and exits 69 (DESIGN).
    REQUIRE(w.process().wait_exit() == 69);
}

TEST_CASE("health kind notify: not running before READY=1, STATUS= shown, a missed "
          "watchdog ping fails",
          "[e2e][health_kinds]") {
    become_subreaper();
    TempDir dir;
    // sd_notify by hand: READY=1 once the test says so, then ten WATCHDOG=1 pings 100ms
    // apart, then silence (alive, but no longer pinging).
    write_file(dir / "notify.py", "import os,socket,sys,time\n"
                                  "addr=os.environ['NOTIFY_SOCKET']\n"
                                  "open(sys.argv[1],'w').write(addr)\n"
                                  "if addr.startswith('@'): addr='\\0'+addr[1:]\n"
                                  "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\n"
                                  "while not os.path.exists(sys.argv[2]): time.sleep(0.02)\n"
                                  "s.sendto(b'READY=1\\nSTATUS=serving 42 requests',addr)\n"
                                  "for i in range(10):\n"
                                  "    s.sendto(b'WATCHDOG=1',addr)\n"
                                  "    time.sleep(0.1)\n"
                                  "time.sleep(3600)\n");
    Vigild v(dir, child_table(kPython, {dir / "notify.py", dir / "env", dir / "go"}) +
                      "[health]\nkind = \"notify\"\n" + kFast + kRestart);
    // The child creates the file, then writes it: wait for the text, not the file.
    REQUIRE(wait_until([&] { return !read_file(dir / "env").empty(); }));
    CHECK(read_file(dir / "env").rfind("@vigil-notify-", 0) == 0);
    // Alive, but it has not said READY=1: starting, whatever the time.
    CHECK(v.log().find("-> running") == std::string::npos);
    Process st({VIGILCTL_PATH, "--socket", dir / "state/vigild.sock", "status"}, dir / "st.out");
    CHECK(st.wait_exit() == 3);
    CHECK(st.output().find("State: starting") != std::string::npos);

    write_file(dir / "go", "");
    REQUIRE(v.wait_log("-> running (healthy: SERVING"));
    Process st2({VIGILCTL_PATH, "--socket", dir / "state/vigild.sock", "status"}, dir / "st2.out");
    CHECK(st2.wait_exit() == 0);
    CHECK(st2.output().find("Notify: serving 42 requests") != std::string::npos);
    // The pings stop: within timeout (500ms, the watchdog once it pinged) a check fails.
    const pid_t first = *v.wait_child_pid();
    const std::size_t mark = v.log().size();
    REQUIRE(v.wait_log("consecutive failed health checks, last: deadline exceeded: no "
                       "WATCHDOG=1 within 500ms"));
    // Killed and restarted: the new child says READY=1 (the test's go-ahead is there) and
    // runs.
    REQUIRE(new_child(v, first) != 0);
    REQUIRE(v.wait_log("-> running (healthy: SERVING", kDeadline, mark));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
