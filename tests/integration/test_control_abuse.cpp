// The control socket under abuse, through the real vigild and vigilctl: a flood of idle
// connections from a denied uid at a low fd limit, a listen backlog nobody drains, and
// oversized request strings.
//
// Nothing here runs a program from the build tree as another user: the connections of
// uid nobody are made by a forked child with raw system calls only, so the tests pass
// wherever the checkout lives (a 0700 home directory included).
#include "harness.hpp"

#include "vigil/v1/supervisor.grpc.pb.h"

#include <catch2/catch.hpp>
#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace vt;

namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
// vigild's fd limit in the flood test, and how many connections nobody opens: several
// times what vigild could hold before the fix.
constexpr int kFdLimit = 256;
constexpr int kFloodConnections = 1200;
// Log lines about the flood the test tolerates: a first line per kind and one summary per
// 10 s period (the test takes well under a minute).
constexpr std::size_t kMaxFloodLogLines = 12;

void figure(const std::string& what) {
    std::fprintf(stderr, "figure: %s\n", what.c_str());
}

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

std::size_t fd_count(pid_t pid) {
    std::size_t n = 0;
    if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
        while (const dirent* e = ::readdir(d))
            n += e->d_name[0] != '.';
        ::closedir(d);
    }
    return n;
}

std::size_t count_lines_with(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        if (text.substr(start, end - start).find(needle) != std::string::npos)
            ++n;
        start = end + 1;
    }
    return n;
}

// A forked child that connects `count` times to `path` as uid/gid nobody and holds the
// connections, idle, until released. It makes raw system calls only: the test process has
// gRPC threads, so nothing else is safe after fork().
class NobodyConnections {
public:
    NobodyConnections(const std::string& path, int count) {
        int result[2], release[2];
        REQUIRE(::pipe2(result, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(release, O_CLOEXEC) == 0);
        const sockaddr_un addr = unix_addr(path);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::close(result[0]);
            ::close(release[1]);
            // Room for every connection: the soft fd limit up to the hard one.
            rlimit nofile{};
            ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, nullptr, &nofile);
            nofile.rlim_cur = nofile.rlim_max;
            ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &nofile, nullptr);
            if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
                ::syscall(SYS_setresgid, kNogroup, kNogroup, kNogroup) != 0 ||
                ::syscall(SYS_setresuid, kNobody, kNobody, kNobody) != 0)
                ::_exit(120);
            int opened = 0;
            for (int i = 0; i < count; ++i) {
                const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                    break;
                // A vigild that stopped accepting leaves connect() waiting for room in the
                // backlog: give up after 2 s and hold what we have.
                timeval tv{2, 0};
                ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
                    ::close(fd);
                    break;
                }
                ++opened;
            }
            if (::write(result[1], &opened, sizeof opened) != sizeof opened)
                ::_exit(121);
            char c;
            while (::read(release[0], &c, 1) < 0 && errno == EINTR) {
            }
            ::_exit(0);
        }
        ::close(result[1]);
        ::close(release[0]);
        result_ = result[0];
        release_ = release[1];
    }
    ~NobodyConnections() { release(); }

    // How many connections were made; nullopt if the child did not say within `deadline`.
    std::optional<int> wait_opened(Ms deadline) {
        pollfd p{result_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(deadline.count())) != 1)
            return std::nullopt;
        int opened = 0;
        if (::read(result_, &opened, sizeof opened) != sizeof opened)
            return std::nullopt;
        return opened;
    }

    void release() {
        if (pid_ <= 0)
            return;
        ::close(release_);
        ::close(result_);
        int status = 0;
        if (!wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; })) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    int result_ = -1;
    int release_ = -1;
};

std::string health_child(const TempDir& dir) {
    return fake_child_table({"--socket", dir / "c.sock"}) + "[health]\naddress = \"unix://" +
           dir / "c.sock" + "\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\n";
}

struct Ctl {
    std::optional<int> code;
    std::string out;
    Ms took;
};

Ctl run_vigilctl(const std::string& out_path, std::vector<std::string> args,
                 Ms deadline = kDeadline) {
    std::vector<std::string> argv{VIGILCTL_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto t0 = std::chrono::steady_clock::now();
    Process p(argv, out_path);
    auto code = p.wait_exit(deadline);
    const auto took = std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0);
    return {code, p.output(), took};
}

} // namespace

TEST_CASE("a flood of idle connections from a denied uid costs vigild no fds: root is "
          "answered and the child restarts",
          "[e2e][control][abuse]") {
    become_subreaper();
    TempDir dir;
    ::chmod(dir.path().c_str(), 0755); // nobody must reach the socket file
    const std::string sock = dir / "open.sock";
    write_file(dir / "vigild.toml", daemon_table(dir) + "control_socket = \"" + sock +
                                        "\"\ncontrol_socket_mode = \"0666\"\n" + health_child(dir));
    Process vigild({"/usr/bin/prlimit",
                    "--nofile=" + std::to_string(kFdLimit) + ":" + std::to_string(kFdLimit), "--",
                    VIGILD_PATH, "--config", dir / "vigild.toml"},
                   dir / "vigild.log");
    REQUIRE(vigild.wait_output("-> running"));
    const auto first = read_pid_file(dir / "state/child.pid");
    REQUIRE(first);
    const std::size_t fds_before = fd_count(vigild.pid());

    NobodyConnections flood(sock, kFloodConnections);
    const auto opened = flood.wait_opened(60s);
    REQUIRE(opened);
    figure("connections nobody opened and holds: " + std::to_string(*opened));
    const std::size_t fds_flooded = fd_count(vigild.pid());
    figure("vigild fds before the flood " + std::to_string(fds_before) + ", during it " +
           std::to_string(fds_flooded) + " (limit " + std::to_string(kFdLimit) + ")");
    CHECK(*opened == kFloodConnections); // vigild kept accepting: nobody never waited

    // Denied connections are answered, then closed: vigild does not hold them.
    CHECK(wait_until([&] { return fd_count(vigild.pid()) <= fds_before + 8; }));

    // Root is still answered, at once.
    auto status = run_vigilctl(dir / "root.out", {"--socket", sock, "status"});
    figure("root's vigilctl status during the flood took " + std::to_string(status.took.count()) +
           "ms");
    REQUIRE(status.code.has_value());
    INFO(status.out);
    CHECK(*status.code == 0);
    CHECK(status.out.find("State: running") != std::string::npos);

    // The child's restart needs fds (pipes, pidfd, records, the probe's channel): it works.
    const auto killed_at = std::chrono::steady_clock::now();
    REQUIRE(::kill(*first, SIGKILL) == 0);
    std::optional<pid_t> second;
    REQUIRE(wait_until([&] {
        second = read_pid_file(dir / "state/child.pid");
        return second && *second != *first && process_alive(*second);
    }));
    REQUIRE(wait_until([&] {
        auto s = run_vigilctl(dir / "root2.out", {"--socket", sock, "status"});
        return s.code == 0 && s.out.find("State: running") != std::string::npos &&
               s.out.find("PID: " + std::to_string(*second)) != std::string::npos;
    }));
    figure(
        "child killed -> new child running, confirmed by vigilctl: " +
        std::to_string(
            std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - killed_at).count()) +
        "ms");
    const std::string log = vigild.output();
    INFO(log.substr(0, 4000));
    CHECK(log.find("Too many open files") == std::string::npos);

    // The log says what happened, in a bounded number of lines.
    const std::size_t denied_lines = count_lines_with(log, "uid 65534");
    const std::size_t accept_lines = count_lines_with(log, "accept failed");
    figure("log lines about uid 65534: " + std::to_string(denied_lines) +
           ", about failed accepts: " + std::to_string(accept_lines));
    CHECK(denied_lines >= 1);
    CHECK(denied_lines <= kMaxFloodLogLines);
    CHECK(accept_lines <= kMaxFloodLogLines);

    flood.release();
    vigild.signal(SIGTERM);
    CHECK(vigild.wait_exit() == 0);
}

TEST_CASE("vigilctl gives up within its deadline when the listen backlog is full",
          "[e2e][control][abuse][vigilctl]") {
    TempDir dir;
    const std::string path = dir / "full.sock";
    const sockaddr_un addr = unix_addr(path);
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 0) == 0);
    // Fill the backlog; nobody ever accepts.
    std::vector<int> fillers;
    for (int i = 0; i < 16; ++i) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            CHECK(errno == EAGAIN);
            ::close(fd);
            break;
        }
        fillers.push_back(fd);
    }
    REQUIRE_FALSE(fillers.empty());

    // vigilctl's deadline is 10 s; generous bound for a loaded machine.
    auto r = run_vigilctl(dir / "ctl.out", {"--socket", path, "status"}, 20s);
    figure("vigilctl against a full backlog exited after " + std::to_string(r.took.count()) + "ms");
    for (int fd : fillers)
        ::close(fd);
    ::close(listener);
    REQUIRE(r.code.has_value());
    INFO(r.out);
    CHECK(*r.code == 69);
    CHECK(r.took < 15s);
    CHECK(r.out.find("listen backlog") != std::string::npos);
    CHECK(r.out.find(path) != std::string::npos);
}

TEST_CASE("an oversized signal name is INVALID_ARGUMENT, never echoed whole",
          "[e2e][control][abuse]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, health_child(dir));
    REQUIRE(v.wait_log("-> running"));
    const std::string sock = dir / "state/vigild.sock";
    auto stub = vigil::v1::Supervisor::NewStub(
        grpc::CreateChannel("unix://" + sock, grpc::InsecureChannelCredentials()));
    for (const std::size_t size : {33UL, 4096UL, 100'000UL}) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
        vigil::v1::SignalRequest req;
        req.set_name(std::string(size, 'A'));
        vigil::v1::CommandReply reply;
        auto st = stub->Signal(&ctx, req, &reply);
        INFO(size << ": " << st.error_code() << " " << st.error_message().substr(0, 200));
        CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
        CHECK(st.error_message().find("too long") != std::string::npos);
        if (size > 64) // cut, with an ellipsis
            CHECK(st.error_message().find("\xE2\x80\xA6") != std::string::npos);
        CHECK(st.error_message().size() < 200);
    }
    // vigilctl checks names itself (a usage error, 64), quoting them back bounded.
    auto bad = run_vigilctl(dir / "kill.out", {"--socket", sock, "kill", std::string(32, 'B')});
    REQUIRE(bad.code.has_value());
    CHECK(*bad.code == 64);
    CHECK(bad.out.find("unknown signal") != std::string::npos);
    CHECK(bad.out.size() < 300);
    // Through vigilctl: a 100 KB argument gets the same clear, bounded answer.
    auto big = run_vigilctl(dir / "big.out", {"--socket", sock, "kill", std::string(100'000, 'C')});
    REQUIRE(big.code.has_value());
    INFO(big.out.substr(0, 300));
    CHECK(*big.code == 64);
    CHECK(big.out.find("unknown signal") != std::string::npos);
    CHECK(big.out.size() < 300);
    // vigild is fine.
    CHECK(run_vigilctl(dir / "status.out", {"--socket", sock, "status"}).code == 0);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
