// Metrics through the real vigild: a scrape over HTTP before and after a kill, the same
// text through `vigilctl metrics`, and a port in use (issue 11, item 1).
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace vt;

namespace {

// A loopback TCP socket bound to a free port and listening (the port stays taken while
// it is open).
struct Listener {
    int fd = -1;
    int port = 0;
    Listener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 1) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    ~Listener() { release(); }
    void release() {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
    }
};

// GET http://127.0.0.1:PORT/metrics: the body, or "" when nothing answers.
std::string scrape(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
            char buf[4096];
            ssize_t n;
            while ((n = ::read(fd, buf, sizeof buf)) > 0)
                out.append(buf, static_cast<size_t>(n));
        }
    }
    ::close(fd);
    const auto body = out.find("\r\n\r\n");
    return body == std::string::npos ? std::string() : out.substr(body + 4);
}

const std::string kNoHealth = "[health]\nkind = \"none\"\n";

} // namespace

TEST_CASE("metrics: a scrape before and after a kill counts the restart", "[e2e][metrics]") {
    become_subreaper();
    TempDir dir;
    Listener free_port;
    const int port = free_port.port;
    free_port.release(); // vigild takes it (a port freed this way is not reused at once)
    Vigild v(dir, fake_child_table({}) + kNoHealth +
                      "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n");
    REQUIRE(v.wait_log("-> running"));
    REQUIRE(v.wait_log("metrics at http://127.0.0.1:" + std::to_string(port) + "/metrics"));
    const std::string before = scrape(port);
    INFO(before);
    CHECK(before.find("vigil_child_up 1\n") != std::string::npos);
    CHECK(before.find("vigil_child_restarts_total 0\n") != std::string::npos);
    CHECK(before.find("vigil_build_info{version=\"") != std::string::npos);

    const auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(::kill(*pid, SIGKILL) == 0);
    REQUIRE(wait_until([&] {
        const auto next = read_pid_file(v.state_dir() + "/child.pid");
        return next && *next != *pid;
    }));
    REQUIRE(wait_until(
        [&] { return scrape(port).find("vigil_child_restarts_total 1\n") != std::string::npos; }));
    const auto metrics = run_vigilctl(dir, {"metrics"});
    REQUIRE(metrics.code == 0);
    const std::string& after = metrics.out;
    CHECK(after.find("vigil_child_restarts_total 1\n") != std::string::npos);
    CHECK(after.find("vigil_child_state{state=\"running\"} 1\n") != std::string::npos);
    CHECK(after.find("vigil_child_oom_kills_total 0\n") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("metrics: a port in use is exit 73 at start and a warning on reload", "[e2e][metrics]") {
    become_subreaper();
    Listener taken;
    {
        TempDir dir;
        Vigild v(dir, fake_child_table({}) + kNoHealth +
                          "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(taken.port) + "\"\n");
        REQUIRE(v.process().wait_exit() == 73);
        CHECK(v.log().find("cannot listen for metrics on 127.0.0.1:" +
                           std::to_string(taken.port)) != std::string::npos);
        CHECK_FALSE(file_exists(v.state_dir() + "/child.pid")); // nothing was started
    }
    {
        TempDir dir;
        Vigild v(dir, fake_child_table({}) + kNoHealth);
        REQUIRE(v.wait_log("-> running"));
        write_file(dir / "vigild.toml",
                   daemon_table(dir) + fake_child_table({}) + kNoHealth +
                       "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(taken.port) + "\"\n");
        v.process().signal(SIGHUP);
        REQUIRE(v.wait_log("metrics stay at (nowhere)"));
        CHECK(::kill(v.process().pid(), 0) == 0); // still up
        v.process().signal(SIGTERM);
        REQUIRE(v.process().wait_exit() == 0);
    }
}
