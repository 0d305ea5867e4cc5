// sd_notify as systemd would see it: the test binds the datagram socket systemd would own,
// points NOTIFY_SOCKET at it and reads what vigild sends.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace vt;

namespace {

struct Message {
    std::string text;
    std::chrono::steady_clock::time_point at;
};

// A bound AF_UNIX datagram socket ("@name" = abstract namespace).
class NotifySocket {
public:
    explicit NotifySocket(const std::string& name) : name_(name) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        socklen_t len;
        if (name[0] == '@') {
            addr.sun_path[0] = '\0';
            std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
            len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
        } else {
            std::strncpy(addr.sun_path, name.c_str(), sizeof addr.sun_path - 1);
            len = sizeof addr;
        }
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    }
    ~NotifySocket() { ::close(fd_); }

    // Drains what has arrived into `messages`.
    void poll() {
        char buf[4096];
        for (;;) {
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0)
                return;
            messages.push_back(
                {std::string(buf, static_cast<size_t>(n)), std::chrono::steady_clock::now()});
        }
    }
    // Waits for a message containing `needle`; returns its index.
    std::optional<size_t> wait_for(const std::string& needle, size_t from = 0,
                                   Ms deadline = kDeadline) {
        std::optional<size_t> found;
        wait_until(
            [&] {
                poll();
                for (size_t i = from; i < messages.size(); ++i)
                    if (messages[i].text.find(needle) != std::string::npos) {
                        found = i;
                        return true;
                    }
                return false;
            },
            deadline);
        return found;
    }
    size_t count(const std::string& needle) {
        poll();
        size_t n = 0;
        for (auto& m : messages)
            n += m.text.find(needle) != std::string::npos;
        return n;
    }

    std::vector<Message> messages;

private:
    std::string name_;
    int fd_ = -1;
};

std::string served_health(const TempDir& dir) {
    return "[health]\naddress = \"unix://" + dir / "child.sock" +
           "\"\ninterval = \"100ms\"\ntimeout = \"300ms\"\n";
}

} // namespace

TEST_CASE("sd_notify: READY=1 only after the child serves, STATUS, WATCHDOG, RELOADING, "
          "STOPPING",
          "[e2e]") {
    become_subreaper();
    TempDir dir;
    NotifySocket sock(dir / "notify.sock");
    Vigild v(dir,
             fake_child_table({"--socket", dir / "child.sock", "--slow-start", "700",
                               "--stamp-file", dir / "stamps"}) +
                 served_health(dir),
             {}, {{"NOTIFY_SOCKET", dir / "notify.sock"}, {"WATCHDOG_USEC", "200000"}});

    auto status = sock.wait_for("STATUS=child starting");
    REQUIRE(status);
    auto ready = sock.wait_for("READY=1");
    REQUIRE(ready);
    CHECK(sock.messages[*ready].text.find("STATUS=child running, pid ") != std::string::npos);
    // The child served no earlier than 700ms after its own start (its stamp).
    auto stamps = read_stamps(dir / "stamps");
    REQUIRE(stamps.size() == 1);
    const auto ready_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              sock.messages[*ready].at.time_since_epoch())
                              .count();
    CHECK(ready_ns >= stamps[0].ns + 700'000'000LL); // steady_clock is CLOCK_MONOTONIC
    CHECK(v.log().find("starting to serve grpc.health.v1.Health") < v.log().find("-> running"));
    CHECK(sock.count("READY=1") == 1);
    CHECK(*status < *ready);

    // Watchdog: WATCHDOG_USEC=200ms -> a ping every 100ms while the loop turns.
    const size_t before = sock.count("WATCHDOG=1");
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(wait_until([&] { return sock.count("WATCHDOG=1") >= before + 5; }, 5s));
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 300ms); // 5 pings at 100ms cadence take at least ~400ms
    CHECK(took < 3s);

    // Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    const size_t mark = sock.messages.size();
    v.process().signal(SIGHUP);
    auto reloading = sock.wait_for("RELOADING=1", mark);
    REQUIRE(reloading);
    CHECK(sock.messages[*reloading].text.find("MONOTONIC_USEC=") != std::string::npos);
    REQUIRE(sock.wait_for("READY=1", *reloading + 1));

    v.process().signal(SIGTERM);
    REQUIRE(sock.wait_for("STOPPING=1"));
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("sd_notify to an abstract socket, and a child that never serves never gets READY",
          "[e2e]") {
    become_subreaper();
    TempDir dir;
    const std::string name = "@vigil-test-" + std::to_string(::getpid());
    NotifySocket sock(name);
    Vigild v(dir,
             fake_child_table({"--socket", dir / "child.sock", "--slow-start", "60000"}) +
                 served_health(dir) + "startup_timeout = \"1s\"\n",
             {}, {{"NOTIFY_SOCKET", name}});
    REQUIRE(sock.wait_for("STATUS=child starting"));
    REQUIRE(v.process().wait_exit() == 69);
    CHECK(sock.count("READY=1") == 0);
    CHECK(sock.count("STOPPING=1") == 1);
}

TEST_CASE("without NOTIFY_SOCKET nothing is sent and nothing breaks", "[e2e]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({}) + "[health]\nkind = \"none\"\n", {}, {});
    REQUIRE(v.wait_log("-> running"));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
