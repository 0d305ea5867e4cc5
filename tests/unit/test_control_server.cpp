// The control server in-process: a FakeBackend behind a real ControlServer on a temp socket,
// driven by real gRPC clients (and by vigilctl's run()).
#include "vigil/conn_limits.hpp"
#include "vigil/control_proto.hpp"
#include "vigil/control_server.hpp"
#include "vigil/ctl.hpp"
#include "vigil/socket_path.hpp"
#include "vigil/unique_fd.hpp"

#include "grpc/health/v1/health.grpc.pb.h"
#include "vigil/v1/supervisor.grpc.pb.h"

#include <catch2/catch.hpp>

#include <type_traits>

#include <optional>

#include <mutex>

#include <condition_variable>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <poll.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

constexpr auto kDeadline = 10s; // generous: CI machines are slow and loaded
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

struct TmpDir {
    std::string path;
    TmpDir() {
        char t[] = "/tmp/vigil-ctl.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TmpDir() { std::filesystem::remove_all(path); }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

SystemTime at_ms(std::int64_t ms) {
    return SystemTime(std::chrono::milliseconds(ms));
}

// The supervisor's side of the seam, scripted. Loop thread only, like the real one.
class FakeBackend : public ControlBackend {
public:
    FakeBackend() {
        snap.state = "running";
        snap.state_reason = "healthy after 42ms";
        snap.pid = 4242;
        snap.adopted = true;
        snap.started_at = at_ms(1'714'564'800'000); // 2024-05-01T12:00:00Z
        snap.state_since = at_ms(1'714'564'800'042);
        snap.restart_count = 3;
        snap.last_exit = ExitStatus{ExitStatus::Kind::signaled, 9};
        snap.last_exit_at = at_ms(1'714'564'799'000);
        snap.health_enabled = true;
        snap.consecutive_health_failures = 1;
        snap.last_health_check = at_ms(1'714'564'900'500);
        snap.last_health_result = "SERVING";
        snap.oom_configured = OomScore{false, -500};
        snap.oom_actual = -500;
        snap.child_binary = "/usr/bin/containerd";
        snap.child_args = {"/usr/bin/containerd", "--config", "/run/vigil/containerd.toml"};
        snap.vigild_version = "0.1.0";
        snap.vigild_pid = 812;
        snap.output_mode = "capture";
    }

    StatusSnapshot status() override { return snap; }
    void start(Reply reply) override {
        calls.push_back("start");
        if (snap.state == "stopped" || snap.state == "failed") {
            snap.state = "starting";
            reply(CommandOutcome::success("started /usr/bin/containerd (pid 4243)"));
        } else {
            reply(CommandOutcome::precondition("the child is already running (pid 4242)"));
        }
    }
    void stop(StopArgs args, Reply reply) override {
        calls.push_back("stop");
        stop_timeout = args.timeout;
        stop_hold_for = args.hold_for;
        stop_reason = args.reason;
        if (hold_stop)
            held.push_back(std::move(reply));
        else
            reply(CommandOutcome::success("stopped pid 4242"));
    }
    void restart(Reply reply) override {
        calls.push_back("restart");
        reply(CommandOutcome::success("restarted: pid 4243"));
    }
    CommandOutcome signal(int sig) override {
        calls.push_back("signal");
        last_signal = sig;
        if (snap.pid == 0)
            return CommandOutcome::precondition("no child to signal (state stopped)");
        return CommandOutcome::success(
            fmt::format("sent {} to pid {}", signal_name(sig), snap.pid));
    }
    CommandOutcome set_oom_score(OomScore score) override {
        calls.push_back("oom");
        last_oom = score;
        return CommandOutcome::success("oom_score_adj set to " + to_string(score));
    }
    void reload(std::function<void(ReloadOutcome)> reply) override {
        calls.push_back("reload");
        reply(ReloadOutcome{CommandOutcome::success("configuration reloaded"), true});
    }
    void shutdown(bool leave_child_running, Reply reply) override {
        calls.push_back("shutdown");
        leave = leave_child_running;
        reply(CommandOutcome::success(leave_child_running ? "exiting, leaving the child"
                                                          : "exiting"));
    }
    Subscription subscribe_events(std::function<void(const Event&)> cb) override {
        const auto id = next_sub++;
        event_subs.emplace(id, std::move(cb));
        return id;
    }
    void unsubscribe_events(Subscription s) override { event_subs.erase(s); }
    std::vector<Event> recent_events() override { return recent; }
    ConfigText effective_config() override { return {"/etc/vigil/vigild.toml", config_toml}; }
    std::string metrics_text() override { return "vigil_child_up 1\n"; }
    std::optional<ConfigText> rejected_config() override { return rejected; }
    std::vector<IncidentEntry> incidents() override {
        return {{"20261130T201500Z-4242", "hang", "3 health checks failed"}};
    }
    std::optional<std::string> incident(const std::string& id, std::string& why_not) override {
        if (id == "20261130T201500Z-4242")
            return std::string("vigil incident 20261130T201500Z-4242\n");
        why_not = "no incident '" + id + "'";
        return std::nullopt;
    }
    std::optional<ConfigText> rejected;
    std::vector<LogLine> log_lines() override { return lines; }
    Subscription subscribe_logs(std::function<void(const LogLine&)> cb) override {
        const auto id = next_sub++;
        log_subs.emplace(id, std::move(cb));
        return id;
    }
    void unsubscribe_logs(Subscription s) override { log_subs.erase(s); }

    void emit(const std::string& message) {
        Event e;
        e.seq = next_seq++;
        e.time = at_ms(1'714'564'800'000 + static_cast<std::int64_t>(e.seq));
        e.kind = Event::Kind::state;
        e.message = message;
        e.from_state = "running";
        e.to_state = "backoff";
        e.pid = 4242;
        auto subs = event_subs; // a callback may unsubscribe
        for (auto& [id, cb] : subs)
            cb(e);
    }
    void log(const std::string& text) {
        LogLine l{next_log_seq++, at_ms(1'714'564'800'000), 4242, "stderr", text};
        lines.push_back(l);
        auto subs = log_subs;
        for (auto& [id, cb] : subs)
            cb(l);
    }

    StatusSnapshot snap;
    std::vector<std::string> calls;
    std::optional<Duration> stop_timeout;
    std::optional<Duration> stop_hold_for;
    std::string stop_reason;
    int last_signal = 0;
    OomScore last_oom;
    bool leave = false;
    bool hold_stop = false;
    std::vector<Reply> held;
    std::map<Subscription, std::function<void(const Event&)>> event_subs;
    std::vector<Event> recent; // what recent_events() answers
    std::map<Subscription, std::function<void(const LogLine&)>> log_subs;
    std::vector<LogLine> lines;
    Subscription next_sub = 1;
    std::uint64_t next_seq = 1;
    std::uint64_t next_log_seq = 1;
    std::string config_toml = "[daemon]\nstate_dir = \"/run/vigil\"\n";
};

// An io_context turning on its own thread: the "loop thread" of these tests.
class Loop {
public:
    Loop() : thread_([this] { io.run(); }) {}
    ~Loop() {
        guard_.reset();
        thread_.join();
    }

    // Runs `f` on the loop thread and returns its result. A mutex and a condition variable,
    // not std::packaged_task: in the test that holds the process at its fd limit, UBSan's
    // vptr check of packaged_task's virtual call cannot open the pipe it reads memory
    // through and reports a valid object as "invalid vptr".
    template <class F> auto run(F f) -> decltype(f()) {
        using R = decltype(f());
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
        std::conditional_t<std::is_void_v<R>, int, std::optional<R>> result{};
        asio::post(io, [&] {
            if constexpr (std::is_void_v<R>)
                f();
            else
                result.emplace(f());
            std::lock_guard lock(m);
            done = true;
            cv.notify_one();
        });
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return done; });
        if constexpr (!std::is_void_v<R>)
            return std::move(*result);
    }

    asio::io_context io;

private:
    asio::executor_work_guard<asio::io_context::executor_type> guard_{io.get_executor()};
    std::thread thread_;
};

class Fixture {
public:
    explicit Fixture(ControlServerOptions opts = {},
                     std::optional<ConnectionLimits> limits = std::nullopt,
                     std::optional<std::chrono::milliseconds> idle_teardown = std::nullopt) {
        sock = dir / "vigild.sock";
        opts.socket_path = sock;
        server = std::make_unique<ControlServer>(loop.io, backend, opts);
        if (limits)
            server->set_connection_limits(*limits);
        if (idle_teardown)
            server->set_idle_teardown(*idle_teardown);
        auto st = loop.run([&] { return server->start(); });
        INFO((st.ok() ? std::string() : st.error().message()));
        REQUIRE(st.ok());
    }
    ~Fixture() {
        shutdown();
        loop.run([&] { server.reset(); });
    }

    // Shuts the server down on the loop; true when done ran within the deadline.
    bool shutdown() {
        auto done = std::make_shared<std::promise<void>>();
        auto fut = done->get_future();
        loop.run([&] { server->shutdown([done] { done->set_value(); }); });
        return fut.wait_for(kDeadline) == std::future_status::ready;
    }

    std::shared_ptr<grpc::Channel> channel() const {
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1); // a connection of its own
        return grpc::CreateCustomChannel(grpc_target(sock), grpc::InsecureChannelCredentials(),
                                         args);
    }
    std::unique_ptr<v1::Supervisor::Stub> stub() const {
        return v1::Supervisor::NewStub(channel());
    }
    ControlConnections::Stats stats() {
        return loop.run([&] { return server->connection_stats(); });
    }
    bool grpc_running() {
        return loop.run([&] { return server->grpc_running(); });
    }
    std::size_t event_subscribers() {
        return loop.run([&] { return backend.event_subs.size(); });
    }

    TmpDir dir;
    std::string sock;
    FakeBackend backend;
    Loop loop;
    std::unique_ptr<ControlServer> server;
};

void set_deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
}

grpc::Status get_status(v1::Supervisor::Stub& stub, v1::StatusReply* reply = nullptr) {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::StatusReply r;
    auto st = stub.GetStatus(&ctx, v1::GetStatusRequest(), &r);
    if (reply != nullptr)
        *reply = r;
    return st;
}

template <class Pred> bool wait_until(Pred pred, std::chrono::milliseconds deadline = kDeadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// A connection to `socket` made by uid/gid nobody, for this process to use: a forked child
// switches to nobody, connects and sends the connected fd back over a socketpair
// (SCM_RIGHTS), so vigild's SO_PEERCRED says 65534 while the gRPC client runs here.
// Nothing is executed as nobody: the test works wherever the build tree lives (a checkout
// under a 0700 home dir included). Only raw system calls after fork(): this process has
// gRPC threads.
UniqueFd connect_as_nobody(const std::string& socket) {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd mine(pair[0]), theirs(pair[1]);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(socket.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
    // The message is built before fork(): the child only fills in the fd.
    char byte = 'f';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
            ::syscall(SYS_setresgid, kNogroup, kNogroup, kNogroup) != 0 ||
            ::syscall(SYS_setresuid, kNobody, kNobody, kNobody) != 0)
            ::_exit(120);
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            ::_exit(121);
        std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
        ::_exit(::sendmsg(theirs.get(), &msg, MSG_NOSIGNAL) == 1 ? 0 : 122);
    }
    theirs.reset();
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("connecting child exit status " << status);
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    char got = 0;
    alignas(cmsghdr) char rcontrol[CMSG_SPACE(sizeof(int))] = {};
    iovec riov{&got, 1};
    msghdr rmsg{};
    rmsg.msg_iov = &riov;
    rmsg.msg_iovlen = 1;
    rmsg.msg_control = rcontrol;
    rmsg.msg_controllen = sizeof rcontrol;
    REQUIRE(::recvmsg(mine.get(), &rmsg, MSG_CMSG_CLOEXEC) == 1);
    const cmsghdr* rc = CMSG_FIRSTHDR(&rmsg);
    REQUIRE(rc != nullptr);
    REQUIRE(rc->cmsg_type == SCM_RIGHTS);
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(rc), sizeof fd);
    UniqueFd conn(fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    REQUIRE(::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0);
    return conn;
}

// A gRPC channel over one connection that vigild sees as nobody's.
std::shared_ptr<grpc::Channel> channel_as_nobody(const std::string& socket) {
    return grpc::CreateInsecureChannelFromFd("nobody", connect_as_nobody(socket).release());
}

// A raw connection of this process (root's), no gRPC.
UniqueFd raw_connect(const std::string& socket) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, socket.c_str());
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

// True once the peer closed `fd` (read returns 0 or an error), within `deadline`.
bool closed_by_peer(int fd, std::chrono::milliseconds deadline = kDeadline) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    const auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
            return false;
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return true;
    }
}

} // namespace

TEST_CASE("control server: GetStatus carries every field of the snapshot", "[unit][control]") {
    Fixture f;
    auto stub = f.stub();
    v1::StatusReply r;
    REQUIRE(get_status(*stub, &r).ok());
    CHECK(r.state() == "running");
    CHECK(r.state_reason() == "healthy after 42ms");
    CHECK(r.state_since() == "2024-05-01T12:00:00.042Z");
    CHECK(r.pid() == 4242);
    CHECK(r.adopted());
    CHECK(r.started_at() == "2024-05-01T12:00:00.000Z");
    CHECK(r.restart_count() == 3);
    CHECK(r.last_exit().kind() == "signaled");
    CHECK(r.last_exit().signal() == 9);
    CHECK(r.last_exit().signal_name() == "SIGKILL");
    CHECK(r.last_exit().description() == describe(ExitStatus{ExitStatus::Kind::signaled, 9}));
    CHECK(r.last_exit().at() == "2024-05-01T11:59:59.000Z");
    CHECK(r.health().enabled());
    CHECK(r.health().consecutive_failures() == 1);
    CHECK(r.health().last_check() == "2024-05-01T12:01:40.500Z");
    CHECK(r.health().last_result() == "SERVING");
    CHECK(r.oom().configured() == "-500");
    CHECK_FALSE(r.oom().configured_inherit());
    CHECK(r.oom().configured_value() == -500);
    CHECK(r.oom().actual_known());
    CHECK(r.oom().actual() == -500);
    CHECK(r.child().binary() == "/usr/bin/containerd");
    REQUIRE(r.child().args_size() == 3);
    CHECK(r.child().args(1) == "--config");
    CHECK(r.child().output() == "capture");
    CHECK(r.vigild().version() == "0.1.0");
    CHECK(r.vigild().pid() == 812);
}

TEST_CASE("control server: commands reach the backend and answer", "[unit][control]") {
    Fixture f;
    auto stub = f.stub();

    SECTION("start in the wrong state is FAILED_PRECONDITION with the reason") {
        grpc::ClientContext ctx;
        v1::CommandReply r;
        auto st = stub->Start(&ctx, v1::StartRequest(), &r);
        CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
        CHECK_THAT(st.error_message(), Contains("already running"));
    }
    SECTION("start from stopped") {
        f.loop.run([&] { f.backend.snap.state = "stopped"; });
        grpc::ClientContext ctx;
        v1::CommandReply r;
        REQUIRE(stub->Start(&ctx, v1::StartRequest(), &r).ok());
        CHECK(r.message() == "started /usr/bin/containerd (pid 4243)");
    }
    SECTION("stop with and without a timeout") {
        {
            grpc::ClientContext ctx;
            v1::CommandReply r;
            REQUIRE(stub->Stop(&ctx, v1::StopRequest(), &r).ok());
            CHECK(r.message() == "stopped pid 4242");
            CHECK_FALSE(f.loop.run([&] { return f.backend.stop_timeout; }).has_value());
        }
        grpc::ClientContext ctx;
        v1::StopRequest req;
        req.mutable_timeout()->set_seconds(2);
        req.mutable_timeout()->set_nanos(500'000'000);
        v1::CommandReply r;
        REQUIRE(stub->Stop(&ctx, req, &r).ok());
        CHECK(f.loop.run([&] { return f.backend.stop_timeout; }) == Duration(2500));
    }
    SECTION("stop with a hold and a reason; bad holds and reasons never reach the backend") {
        {
            grpc::ClientContext ctx;
            v1::StopRequest req;
            req.mutable_hold_for()->set_seconds(3600);
            req.set_reason("disk replacement");
            v1::CommandReply r;
            REQUIRE(stub->Stop(&ctx, req, &r).ok());
            CHECK(f.loop.run([&] { return f.backend.stop_hold_for; }) == Duration(3'600'000));
            CHECK(f.loop.run([&] { return f.backend.stop_reason; }) == "disk replacement");
        }
        auto bad = [&](auto fill, const std::string& error) {
            grpc::ClientContext ctx;
            v1::StopRequest req;
            fill(req);
            v1::CommandReply r;
            auto st = stub->Stop(&ctx, req, &r);
            CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
            CHECK(st.error_message().find(error) != std::string::npos);
        };
        const auto calls = f.loop.run([&] { return f.backend.calls.size(); });
        bad([](v1::StopRequest& q) { q.mutable_hold_for()->set_seconds(-1); }, "greater than 0");
        bad([](v1::StopRequest& q) { q.mutable_hold_for(); }, "greater than 0");
        bad([](v1::StopRequest& q) { q.mutable_hold_for()->set_seconds(400LL * 86400); },
            "at most 365 days");
        bad([](v1::StopRequest& q) { q.set_reason("two\nlines"); }, "one line");
        bad([](v1::StopRequest& q) { q.set_reason(std::string(2000, 'x')); }, "at most 1024");
        CHECK(f.loop.run([&] { return f.backend.calls.size(); }) == calls);
    }
    SECTION("restart") {
        grpc::ClientContext ctx;
        v1::CommandReply r;
        REQUIRE(stub->Restart(&ctx, v1::RestartRequest(), &r).ok());
        CHECK(r.message() == "restarted: pid 4243");
    }
    SECTION("signal by name, short name and number") {
        for (auto [name, sig] : {std::pair{"SIGUSR1", 10}, {"HUP", 1}, {"15", 15}}) {
            grpc::ClientContext ctx;
            v1::SignalRequest req;
            req.set_name(name);
            v1::CommandReply r;
            REQUIRE(stub->Signal(&ctx, req, &r).ok());
            CHECK(f.loop.run([&] { return f.backend.last_signal; }) == sig);
        }
        grpc::ClientContext ctx;
        v1::SignalRequest req;
        req.set_number(12);
        v1::CommandReply r;
        REQUIRE(stub->Signal(&ctx, req, &r).ok());
        CHECK(r.message() == "sent SIGUSR2 to pid 4242");
    }
    SECTION("signal without a child is FAILED_PRECONDITION") {
        f.loop.run([&] { f.backend.snap.pid = 0; });
        grpc::ClientContext ctx;
        v1::SignalRequest req;
        req.set_name("TERM");
        v1::CommandReply r;
        auto st = stub->Signal(&ctx, req, &r);
        CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
        CHECK_THAT(st.error_message(), Contains("no child"));
    }
    SECTION("oom score value and inherit") {
        {
            grpc::ClientContext ctx;
            v1::SetOomScoreAdjRequest req;
            req.set_value(0); // zero is a value, not "unset": the oneof says which
            v1::CommandReply r;
            REQUIRE(stub->SetOomScoreAdj(&ctx, req, &r).ok());
            CHECK(f.loop.run([&] { return f.backend.last_oom; }) == OomScore{false, 0});
        }
        grpc::ClientContext ctx;
        v1::SetOomScoreAdjRequest req;
        req.set_inherit(true);
        v1::CommandReply r;
        REQUIRE(stub->SetOomScoreAdj(&ctx, req, &r).ok());
        CHECK(f.loop.run([&] { return f.backend.last_oom; }) == OomScore{true, 0});
        CHECK(r.message() == "oom_score_adj set to inherit");
    }
    SECTION("reload") {
        grpc::ClientContext ctx;
        v1::ReloadReply r;
        REQUIRE(stub->Reload(&ctx, v1::ReloadRequest(), &r).ok());
        CHECK(r.message() == "configuration reloaded");
        CHECK(r.child_restarted());
    }
    SECTION("shutdown leaving the child") {
        grpc::ClientContext ctx;
        v1::ShutdownRequest req;
        req.set_leave_child_running(true);
        v1::CommandReply r;
        REQUIRE(stub->Shutdown(&ctx, req, &r).ok());
        CHECK(f.loop.run([&] { return f.backend.leave; }));
    }
    SECTION("vigild's own grpc.health.v1") {
        auto health = grpc::health::v1::Health::NewStub(f.channel());
        grpc::ClientContext ctx;
        set_deadline(ctx);
        grpc::health::v1::HealthCheckResponse r;
        REQUIRE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r).ok());
        CHECK(r.status() == grpc::health::v1::HealthCheckResponse::SERVING);
    }
}

TEST_CASE("control server: bad arguments are INVALID_ARGUMENT, never a backend call",
          "[unit][control]") {
    Fixture f;
    auto stub = f.stub();
    auto expect_invalid = [](const grpc::Status& st, const std::string& needle) {
        INFO(st.error_message());
        CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
        CHECK_THAT(st.error_message(), Contains(needle));
    };
    auto signal = [&](auto set) {
        grpc::ClientContext ctx;
        v1::SignalRequest req;
        set(req);
        v1::CommandReply r;
        return stub->Signal(&ctx, req, &r);
    };
    expect_invalid(signal([](auto& r) { r.set_name("SIGFOO"); }), "unknown signal 'SIGFOO'");
    expect_invalid(signal([](auto& r) { r.set_name(""); }), "unknown signal");
    // Bounded before use, and never echoed whole: a 100 KB name once came back as "metadata
    // size exceeds limit" (the message did not fit gRPC's trailers).
    for (const std::size_t size : {33UL, 1000UL, 100'000UL}) {
        const auto st = signal([&](auto& r) { r.set_name(std::string(size, 'X')); });
        expect_invalid(st, fmt::format("is too long ({} bytes; at most 32)", size));
        CHECK(st.error_message().size() < 120);
    }
    {
        // 41 bytes: the cut at 40 would split the "é"; it goes before it instead.
        const auto st = signal([](auto& r) { r.set_name(std::string(39, 'Y') + "\xC3\xA9"); });
        expect_invalid(st, "'" + std::string(39, 'Y') + "\xE2\x80\xA6' is too long (41 bytes");
        CHECK_THAT(st.error_message(), !Contains("\xEF\xBF\xBD")); // no broken character
    }
    expect_invalid(signal([](auto& r) { r.set_name(std::string(32, 'Z')); }),
                   "unknown signal '" + std::string(32, 'Z') + "'");
    // Not UTF-8: gRPC itself rejects the request before it reaches a handler.
    CHECK_FALSE(signal([](auto& r) { r.set_name(std::string("\xff\xfe", 2)); }).ok());
    expect_invalid(signal([](auto& r) { r.set_number(0); }), "out of range");
    expect_invalid(signal([](auto& r) { r.set_number(65); }), "out of range");
    expect_invalid(signal([](auto& r) { r.set_number(-9); }), "out of range");
    expect_invalid(signal([](auto&) {}), "no signal given");

    auto oom = [&](auto set) {
        grpc::ClientContext ctx;
        v1::SetOomScoreAdjRequest req;
        set(req);
        v1::CommandReply r;
        return stub->SetOomScoreAdj(&ctx, req, &r);
    };
    expect_invalid(oom([](auto& r) { r.set_value(1001); }), "out of range (-1000..1000)");
    expect_invalid(oom([](auto& r) { r.set_value(-1001); }), "out of range");
    expect_invalid(oom([](auto& r) { r.set_inherit(false); }), "inherit must be true");
    expect_invalid(oom([](auto&) {}), "no score given");

    auto stop = [&](std::int64_t secs, std::int32_t nanos) {
        grpc::ClientContext ctx;
        v1::StopRequest req;
        req.mutable_timeout()->set_seconds(secs);
        req.mutable_timeout()->set_nanos(nanos);
        v1::CommandReply r;
        return stub->Stop(&ctx, req, &r);
    };
    expect_invalid(stop(-1, 0), "must not be negative");
    expect_invalid(stop(0, -5), "must not be negative");
    expect_invalid(stop(0, 1'000'000'000), "out of range");
    expect_invalid(stop(INT64_MAX, 0), "out of range");

    CHECK(f.loop.run([&] { return f.backend.calls; }).empty());
    CHECK(get_status(*stub).ok()); // and vigild still answers
}

TEST_CASE("control server: WatchEvents serves several watchers in order", "[unit][control]") {
    Fixture f;
    auto stub = f.stub();
    grpc::ClientContext c1, c2;
    auto r1 = stub->WatchEvents(&c1, v1::WatchEventsRequest());
    auto r2 = stub->WatchEvents(&c2, v1::WatchEventsRequest());
    r1->WaitForInitialMetadata(); // headers come once the watcher is subscribed
    r2->WaitForInitialMetadata();
    CHECK(f.event_subscribers() == 2);
    CHECK(f.loop.run([&] { return f.server->stream_count(); }) == 2);

    f.loop.run([&] {
        for (int i = 0; i < 10; ++i)
            f.backend.emit(fmt::format("event {}", i));
    });
    for (auto* r : {r1.get(), r2.get()}) {
        for (std::uint64_t seq = 1; seq <= 10; ++seq) {
            v1::Event e;
            REQUIRE(r->Read(&e));
            CHECK(e.seq() == seq);
            CHECK(e.kind() == "state");
            CHECK(e.message() == fmt::format("event {}", seq - 1));
            CHECK(e.from_state() == "running");
            CHECK(e.to_state() == "backoff");
            CHECK(e.exit().kind() == "none");
        }
    }
    // A watcher that goes away is unsubscribed.
    c1.TryCancel();
    CHECK(r1->Finish().error_code() == grpc::StatusCode::CANCELLED);
    CHECK(wait_until([&] { return f.event_subscribers() == 1; }));
    c2.TryCancel();
    r2->Finish();
    CHECK(wait_until([&] { return f.event_subscribers() == 0; }));
}

TEST_CASE("control server: Logs sends the captured lines, then follows", "[unit][control]") {
    Fixture f;
    auto stub = f.stub();
    f.loop.run([&] {
        f.backend.log("first");
        f.backend.log(std::string("bad \xc3\x28 utf-8")); // must not break the stream
    });

    SECTION("without follow: the captured lines, then OK") {
        grpc::ClientContext ctx;
        auto r = stub->Logs(&ctx, v1::LogsRequest());
        v1::LogLine l;
        REQUIRE(r->Read(&l));
        CHECK(l.text() == "first");
        CHECK(l.stream() == "stderr");
        CHECK(l.pid() == 4242);
        REQUIRE(r->Read(&l));
        CHECK(l.text() == "bad \xef\xbf\xbd( utf-8");
        CHECK_FALSE(r->Read(&l));
        CHECK(r->Finish().ok());
    }
    SECTION("with follow: the captured lines, then new ones") {
        grpc::ClientContext ctx;
        v1::LogsRequest req;
        req.set_follow(true);
        auto r = stub->Logs(&ctx, req);
        r->WaitForInitialMetadata();
        f.loop.run([&] { f.backend.log("third"); });
        v1::LogLine l;
        for (const char* want : {"first", "bad \xef\xbf\xbd( utf-8", "third"}) {
            REQUIRE(r->Read(&l));
            CHECK(l.text() == want);
        }
        ctx.TryCancel();
        r->Finish();
        CHECK(wait_until([&] { return f.loop.run([&] { return f.backend.log_subs.empty(); }); }));
    }
    SECTION("output not captured is FAILED_PRECONDITION") {
        f.loop.run([&] { f.backend.snap.output_mode = "inherit"; });
        grpc::ClientContext ctx;
        auto r = stub->Logs(&ctx, v1::LogsRequest());
        v1::LogLine l;
        CHECK_FALSE(r->Read(&l));
        auto st = r->Finish();
        CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
        CHECK_THAT(st.error_message(), Contains("not captured"));
    }
}

TEST_CASE("control server: a watcher that never reads slows nobody and is told it overflowed",
          "[unit][control]") {
    Fixture f;
    auto slow_stub = f.stub();
    grpc::ClientContext slow_ctx;
    auto slow = slow_stub->WatchEvents(&slow_ctx, v1::WatchEventsRequest());
    slow->WaitForInitialMetadata();

    const std::string padding(200, 'x');
    constexpr int kEvents = 50'000;
    const auto t0 = std::chrono::steady_clock::now();
    f.loop.run([&] {
        for (int i = 0; i < kEvents; ++i)
            f.backend.emit(padding);
    });
    // The loop was never blocked by the slow watcher: 50k events in well under a second
    // per thousand, and GetStatus answers at once.
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    auto stub = f.stub();
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(get_status(*stub).ok());
    CHECK(std::chrono::steady_clock::now() - t1 < 1s);
    // Overflowed: unsubscribed, so it costs the loop nothing any more.
    CHECK(wait_until([&] { return f.event_subscribers() == 0; }));

    // When it does read: what was already on its way, then RESOURCE_EXHAUSTED.
    v1::Event e;
    std::uint64_t last = 0;
    while (slow->Read(&e)) {
        CHECK(e.seq() == last + 1);
        last = e.seq();
    }
    CHECK(last < kEvents);
    auto st = slow->Finish();
    INFO(st.error_message());
    CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(st.error_message(), Contains("event queue overflow"));
    CHECK_THAT(st.error_message(), Contains("events dropped"));
}

TEST_CASE("control server: garbage on the socket does not hurt it", "[unit][control]") {
    Fixture f;
    auto raw_connect = [&] {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, f.sock.c_str());
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        return fd;
    };
    ::close(raw_connect()); // connect and leave at once (vigilctl's probe does this)
    const int fd = raw_connect();
    const std::string junk = "GET / HTTP/1.1\r\nHost: vigil\r\n\r\n" + std::string(4096, '\xff');
    CHECK(::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL) > 0);
    ::close(fd);
    auto stub = f.stub();
    CHECK(get_status(*stub).ok());
}

TEST_CASE("control server: 8 parallel clients x 500 GetStatus", "[unit][control]") {
    Fixture f;
    constexpr int kClients = 8;
    constexpr int kCalls = 500;
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < kClients; ++c) {
        threads.emplace_back([&] {
            auto stub = f.stub();
            for (int i = 0; i < kCalls; ++i) {
                v1::StatusReply r;
                if (get_status(*stub, &r).ok() && r.pid() == 4242)
                    ++ok;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(ok == kClients * kCalls);
}

TEST_CASE("control server: shutdown finishes open streams and pending commands",
          "[unit][control]") {
    Fixture f;
    f.loop.run([&] { f.backend.hold_stop = true; }); // a stop that never completes
    auto stub = f.stub();

    grpc::ClientContext reading_ctx, idle_ctx;
    auto reading = stub->WatchEvents(&reading_ctx, v1::WatchEventsRequest());
    auto idle = stub->WatchEvents(&idle_ctx, v1::WatchEventsRequest());
    reading->WaitForInitialMetadata();
    idle->WaitForInitialMetadata();
    f.loop.run([&] {
        // 4 MB: more than gRPC's flow-control window, so the idle watcher is left with a
        // write stuck, but fewer events than its queue limit.
        for (int i = 0; i < 1000; ++i)
            f.backend.emit(std::string(4096, 'y'));
    });

    auto stop = std::async(std::launch::async, [&] {
        grpc::ClientContext ctx;
        v1::CommandReply r;
        return stub->Stop(&ctx, v1::StopRequest(), &r);
    });
    REQUIRE(wait_until([&] { return f.loop.run([&] { return f.backend.held.size(); }) == 1; }));

    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(f.shutdown());
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK_FALSE(std::filesystem::exists(f.sock));
    CHECK(f.event_subscribers() == 0);

    auto stop_status = stop.get();
    CHECK(stop_status.error_code() == grpc::StatusCode::UNAVAILABLE);
    CHECK_THAT(stop_status.error_message(), Contains("shutting down"));
    v1::Event e;
    while (reading->Read(&e)) {
    }
    auto st = reading->Finish();
    INFO(st.error_code() << " " << st.error_message());
    CHECK((st.error_code() == grpc::StatusCode::UNAVAILABLE ||
           st.error_code() == grpc::StatusCode::CANCELLED));
    while (idle->Read(&e)) {
    }
    st = idle->Finish();
    INFO(st.error_code() << " " << st.error_message());
    CHECK((st.error_code() == grpc::StatusCode::UNAVAILABLE ||
           st.error_code() == grpc::StatusCode::CANCELLED));

    // The backend's late reply finds the call finished already: nothing happens.
    f.loop.run([&] {
        for (auto& reply : f.backend.held)
            reply(CommandOutcome::success("stopped late"));
    });
    // Shutdown is idempotent and a second done still comes.
    CHECK(f.shutdown());
}

TEST_CASE("control server: start() checks the path, replaces a stale socket, applies mode "
          "and group",
          "[unit][control]") {
    TmpDir dir;
    FakeBackend backend;
    Loop loop;
    auto start = [&](ControlServerOptions opts) {
        return loop.run([&] {
            ControlServer s(loop.io, backend, opts);
            auto st = s.start();
            struct stat sb {};
            const bool exists = ::lstat(opts.socket_path.c_str(), &sb) == 0;
            s.shutdown({});
            return std::tuple(st.ok() ? std::string() : st.error().message(), exists, sb);
        });
    };

    SECTION("a path longer than sun_path is a clear error") {
        ControlServerOptions o;
        o.socket_path = dir.path + "/" + std::string(120, 's');
        auto [error, exists, sb] = start(o);
        CHECK_THAT(error, Contains("more than the 107 a unix socket allows"));
        CHECK_FALSE(exists);
    }
    SECTION("a stale socket is replaced; mode and group applied") {
        ControlServerOptions o;
        o.socket_path = dir / "vigild.sock";
        o.mode = 0640;
        o.group = "nogroup";
        {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            std::strcpy(addr.sun_path, o.socket_path.c_str());
            REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
            ::close(fd); // a dead vigild's socket: the file stays
        }
        auto [error, exists, sb] = start(o);
        CHECK(error.empty());
        REQUIRE(exists);
        CHECK(S_ISSOCK(sb.st_mode));
        CHECK((sb.st_mode & 07777) == 0640);
        CHECK(sb.st_gid == kNogroup);
        CHECK_FALSE(std::filesystem::exists(o.socket_path)); // removed by shutdown
    }
    SECTION("a file that is not a socket is never removed") {
        ControlServerOptions o;
        o.socket_path = dir / "not-a-socket";
        std::ofstream(o.socket_path) << "precious";
        auto [error, exists, sb] = start(o);
        CHECK_THAT(error, Contains("exists and is not a socket"));
        CHECK(std::filesystem::file_size(o.socket_path) == 8);
    }
    SECTION("an unknown group is an error") {
        ControlServerOptions o;
        o.socket_path = dir / "vigild.sock";
        o.group = "no-such-group-vigil";
        auto [error, exists, sb] = start(o);
        CHECK_THAT(error, Contains("control_socket_group 'no-such-group-vigil' does not exist"));
        CHECK_FALSE(exists);
    }
}

TEST_CASE("control server: peers other than root, vigild's uid and allowed_uids are denied",
          "[unit][control]") {
    if (::geteuid() != 0) {
        WARN("needs root to connect as nobody; not run");
        return;
    }
    SECTION("nobody is denied on every method; root still answered afterwards") {
        ControlServerOptions o;
        o.mode = 0666;
        // A grace longer than the test: only the answer can close these connections.
        ConnectionLimits limits = ConnectionLimits::from_fd_limit(4096, 0);
        limits.rejected_grace = 300s;
        Fixture f(o, limits);
        ::chmod(f.dir.path.c_str(), 0755); // nobody must reach the socket file
        // The channels stay open to the end: whatever closes the connections is vigild.
        std::vector<std::shared_ptr<grpc::Channel>> channels;
        for (int i = 0; i < 3; ++i)
            channels.push_back(channel_as_nobody(f.sock));
        {
            auto st = get_status(*v1::Supervisor::NewStub(channels[0]));
            INFO(st.error_message());
            CHECK(st.error_code() == grpc::StatusCode::PERMISSION_DENIED);
            CHECK_THAT(st.error_message(), Contains("permission denied"));
        }
        {
            // vigild's own health too.
            auto health = grpc::health::v1::Health::NewStub(channels[1]);
            grpc::ClientContext ctx;
            set_deadline(ctx);
            grpc::health::v1::HealthCheckResponse r;
            CHECK(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r).error_code() ==
                  grpc::StatusCode::PERMISSION_DENIED);
        }
        {
            auto stub = v1::Supervisor::NewStub(channels[2]);
            grpc::ClientContext ctx;
            set_deadline(ctx);
            auto w = stub->WatchEvents(&ctx, v1::WatchEventsRequest());
            v1::Event e;
            CHECK_FALSE(w->Read(&e));
            CHECK(w->Finish().error_code() == grpc::StatusCode::PERMISSION_DENIED);
        }
        CHECK(get_status(*f.stub()).ok());
        CHECK(f.loop.run([&] { return f.backend.calls; }).empty());
        // Each denied connection was closed by vigild once answered: it holds none of them.
        CHECK(wait_until([&] { return f.stats().closed_rejected == 3; }));
        CHECK(f.stats().rejected == 0);
    }
    SECTION("nobody in allowed_uids is let in") {
        ControlServerOptions o;
        o.mode = 0666;
        o.allowed_uids = {kNobody};
        Fixture f(o);
        ::chmod(f.dir.path.c_str(), 0755);
        v1::StatusReply r;
        auto st = get_status(*v1::Supervisor::NewStub(channel_as_nobody(f.sock)), &r);
        INFO(st.error_message());
        CHECK(st.ok());
        CHECK(r.pid() == 4242);
    }
}

TEST_CASE("control server: a denied peer that makes no call is closed after the grace, "
          "past the cap of rejected connections it is closed at once",
          "[unit][control]") {
    if (::geteuid() != 0) {
        WARN("needs root to connect as nobody; not run");
        return;
    }
    ControlServerOptions o;
    o.mode = 0666;
    ConnectionLimits limits = ConnectionLimits::from_fd_limit(4096, 0);
    limits.max_rejected = 2;
    SECTION("past the cap, closed at once") {
        limits.rejected_grace = 300s; // the first two stay for the whole test
        Fixture f(o, limits);
        ::chmod(f.dir.path.c_str(), 0755);
        auto a = connect_as_nobody(f.sock);
        auto b = connect_as_nobody(f.sock);
        REQUIRE(wait_until([&] { return f.stats().rejected == 2; }));
        auto c = connect_as_nobody(f.sock); // the third: no room to answer it
        CHECK(closed_by_peer(c.get()));
        CHECK(f.stats().closed_at_accept == 1);
        CHECK(f.stats().rejected == 2);
        CHECK(get_status(*f.stub()).ok()); // root is served meanwhile
    }
    SECTION("no call: closed after the grace") {
        limits.rejected_grace = 300ms;
        Fixture f(o, limits);
        ::chmod(f.dir.path.c_str(), 0755);
        const auto t0 = std::chrono::steady_clock::now();
        auto a = connect_as_nobody(f.sock);
        CHECK(closed_by_peer(a.get()));
        const auto took = std::chrono::steady_clock::now() - t0;
        CHECK(took >= 300ms);
        CHECK(took < 5s);
        CHECK(wait_until([&] { return f.stats().rejected == 0; }));
        CHECK(f.stats().closed_rejected == 1);
    }
}

TEST_CASE("control server: an idle connection is closed, one with a stream open is not",
          "[unit][control]") {
    ConnectionLimits limits = ConnectionLimits::from_fd_limit(4096, 0);
    limits.idle_timeout = 300ms;
    Fixture f({}, limits);
    // A raw connection that never says a word.
    auto idle = raw_connect(f.sock);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(closed_by_peer(idle.get()));
    CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);
    CHECK(wait_until([&] { return f.stats().closed_idle >= 1; }));

    // A watcher is not idle, however long nothing happens.
    auto stub = f.stub();
    grpc::ClientContext ctx;
    auto watch = stub->WatchEvents(&ctx, v1::WatchEventsRequest());
    watch->WaitForInitialMetadata();
    REQUIRE(wait_until([&] { return f.event_subscribers() == 1; }));
    const auto closed_before = f.stats().closed_idle;
    // An idle neighbour opened after the stream: once it is closed, the idle timeout has
    // passed for the stream's connection too.
    auto neighbour = raw_connect(f.sock);
    CHECK(closed_by_peer(neighbour.get()));
    CHECK(wait_until([&] { return f.stats().closed_idle == closed_before + 1; }));
    f.loop.run([&] { f.backend.emit("still here"); });
    v1::Event e;
    REQUIRE(watch->Read(&e));
    CHECK(e.message() == "still here");
    CHECK(f.stats().closed_idle == closed_before + 1);
    ctx.TryCancel();
    watch->Finish();
}

TEST_CASE("control server: past its connection cap a uid gets RESOURCE_EXHAUSTED",
          "[unit][control]") {
    ConnectionLimits limits = ConnectionLimits::from_fd_limit(4096, 0);
    limits.max_per_uid = 2;
    Fixture f({}, limits);
    auto one = raw_connect(f.sock);
    auto two = raw_connect(f.sock);
    REQUIRE(wait_until([&] { return f.stats().served == 2; }));
    auto st = get_status(*f.stub());
    INFO(st.error_message());
    CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(st.error_message(), Contains("connection limit"));
    CHECK(wait_until([&] { return f.stats().rejected == 0; })); // answered, then closed
    // Room again once one leaves.
    one.reset();
    REQUIRE(wait_until([&] { return f.stats().served == 1; }));
    CHECK(get_status(*f.stub()).ok());
}

// Takes every free fd slot of this process below RLIMIT_NOFILE, first lowered to
// `headroom` above the fds open now. No Catch assertion may run while the slots are taken
// (UBSan's checks inside Catch's assertions need a pipe): check what you measured after
// release(), which gives every slot back and restores the limit (the destructor too).
class FdSqueeze {
public:
    explicit FdSqueeze(std::size_t headroom) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        std::size_t open_now = 0;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
            (void)e;
            ++open_now;
        }
        rlimit low = saved_;
        low.rlim_cur = open_now + headroom;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
        for (;;) {
            UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (!fd.valid())
                break;
            fillers_.push_back(std::move(fd));
        }
        taken_ = fillers_.size();
    }
    ~FdSqueeze() { release(); }
    FdSqueeze(const FdSqueeze&) = delete;
    FdSqueeze& operator=(const FdSqueeze&) = delete;

    // How many slots were free (and taken) at the start.
    std::size_t taken() const { return taken_; }
    // The limit before the squeeze (a forked child may restore it for itself).
    const rlimit& saved() const { return saved_; }
    // Frees `n` of the taken slots (fewer if fewer are held).
    void give_back(std::size_t n) {
        fillers_.resize(fillers_.size() >= n ? fillers_.size() - n : 0);
    }
    // Every slot back and the limit restored; false if the limit could not be restored.
    bool release() {
        fillers_.clear();
        if (released_)
            return true;
        released_ = true;
        return ::setrlimit(RLIMIT_NOFILE, &saved_) == 0;
    }

private:
    rlimit saved_{};
    std::vector<UniqueFd> fillers_;
    std::size_t taken_ = 0;
    bool released_ = false;
};

TEST_CASE("control server: out of fds, the accept loop sheds connections instead of spinning",
          "[unit][control]") {
    ConnectionLimits limits = ConnectionLimits::from_fd_limit(1'048'576, 0);
    Fixture f({}, limits);
    constexpr int kConnections = 40;
    // The connections come from a forked child (its own fd table; raw system calls only),
    // held until released.
    int result[2], release[2];
    REQUIRE(::pipe2(result, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(release, O_CLOEXEC) == 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, f.sock.c_str());

    // This process (the server's) gets only a few fds more than it has open, and then none
    // at all: the last free slots are taken here, so every accept() meets EMFILE however
    // many fds gRPC's threads happen to hold (with one slot free, a connection is accepted,
    // cannot be watched and is closed, and accept() never sees EMFILE).
    FdSqueeze squeeze(6);
    const rlimit saved = squeeze.saved();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(result[0]);
        ::close(release[1]);
        ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &saved, nullptr);
        int opened = 0;
        for (int i = 0; i < kConnections; ++i) {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            timeval tv{2, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
                break;
            ++opened;
        }
        if (::write(result[1], &opened, sizeof opened) != sizeof opened)
            ::_exit(1);
        char c;
        while (::read(release[0], &c, 1) < 0 && errno == EINTR) {
        }
        ::_exit(0);
    }
    ::close(result[1]);
    ::close(release[0]);
    int opened = 0;
    const bool told = ::read(result[0], &opened, sizeof opened) == sizeof opened;
    // Every connection is dealt with: served, closed because it could not be watched, or
    // shed. None is left in the backlog keeping the socket readable (the loop would spin).
    const bool drained = wait_until([&] {
        const auto s = f.stats();
        return s.served + s.closed_at_accept + s.shed == static_cast<std::uint64_t>(opened);
    });
    const auto stats = f.stats();
    REQUIRE(squeeze.release());
    ::close(release[1]);
    ::close(result[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(pid > 0);
    REQUIRE(told);
    CHECK(opened == kConnections);
    INFO("served " << stats.served << ", unwatched " << stats.closed_at_accept << ", shed "
                   << stats.shed);
    CHECK(drained);
    // gRPC's threads may free a slot now and then (one connection is then served), but
    // with every slot taken here, accept() meets EMFILE and sheds.
    CHECK(stats.shed > 0);
    // With fds again, the server answers.
    CHECK(get_status(*f.stub()).ok());
}

TEST_CASE("connection limits: derived from the fd limit, with a reserve for the spawn",
          "[unit][control]") {
    const auto big = ConnectionLimits::from_fd_limit(1'048'576, 20);
    CHECK(big.max_total == 256);
    CHECK(big.max_per_uid == 32);
    CHECK(big.max_rejected == 16);
    CHECK(big.root_reserved == 4);
    CHECK(big.idle_timeout == 60s);
    CHECK(big.rejected_grace == 1s);
    CHECK(big.log_period == 10s);
    // 256 fds, 20 in use: (256 - 20 - 64) / 2 = 86 slots; 16 rejected, 70 served.
    const auto small = ConnectionLimits::from_fd_limit(256, 20);
    CHECK(small.max_rejected == 16);
    CHECK(small.max_total == 70);
    CHECK((small.max_total + small.max_rejected) * 2 + 20 + 64 <= 256);
    // Nothing left after the reserve: still one of each, never zero.
    const auto tiny = ConnectionLimits::from_fd_limit(64, 20);
    CHECK(tiny.max_total == 1);
    CHECK(tiny.max_rejected == 1);
    CHECK(tiny.root_reserved == 0);
}

TEST_CASE("connection limits: who is served, answered with an error, or closed",
          "[unit][control]") {
    ConnectionLimits l;
    l.max_total = 10;
    l.max_per_uid = 4;
    l.root_reserved = 2;
    l.max_rejected = 3;
    struct Row {
        ConnectionCounts counts;
        bool allowed, privileged;
        Admission expect;
    };
    const Row rows[] = {
        {{0, 0, 0}, true, true, Admission::serve},
        {{3, 3, 0}, true, false, Admission::serve},
        {{4, 4, 0}, true, false, Admission::refuse_busy}, // per uid
        {{8, 1, 0}, true, false, Admission::refuse_busy}, // the last 2 are root's
        {{8, 1, 0}, true, true, Admission::serve},        // ... and root gets them
        {{10, 1, 0}, true, true, Admission::refuse_busy}, // total
        {{10, 1, 3}, true, true, Admission::close_now},   // no room to answer
        {{0, 0, 2}, false, false, Admission::deny},
        {{0, 0, 3}, false, false, Admission::close_now},
    };
    for (const auto& r : rows) {
        INFO(r.counts.served << " " << r.counts.served_by_uid << " " << r.counts.rejected << " "
                             << r.allowed << r.privileged);
        CHECK(admit(l, r.counts, r.allowed, r.privileged) == r.expect);
    }
}

TEST_CASE("LogThrottle: the first event in full, then one summary per period", "[unit][control]") {
    LogThrottle t(10s, 2);
    const auto t0 = Clock::time_point{} + 1h;
    CHECK(t.note("denied:65534", t0));
    CHECK_FALSE(t.next_due() == std::nullopt);
    for (int i = 1; i <= 811; ++i)
        CHECK_FALSE(t.note("denied:65534", t0 + std::chrono::milliseconds(i)));
    CHECK(t.take_due(t0 + 9s).empty());
    auto due = t.take_due(t0 + 10s);
    REQUIRE(due.size() == 1);
    CHECK(due[0].key == "denied:65534");
    CHECK(due[0].suppressed == 811);
    // The flood goes on: counted in the next window, not logged in full.
    CHECK_FALSE(t.note("denied:65534", t0 + 11s));
    due = t.take_due(t0 + 20s);
    REQUIRE(due.size() == 1);
    CHECK(due[0].suppressed == 1);
    // A quiet window is forgotten: the next event is logged in full again.
    CHECK(t.take_due(t0 + 30s).empty());
    CHECK(t.next_due() == std::nullopt);
    CHECK(t.note("denied:65534", t0 + 31s));
    // Past max_keys distinct keys, the rest share "other".
    CHECK(t.note("denied:1", t0 + 31s));
    CHECK(t.note("denied:2", t0 + 31s)); // "other"'s first
    CHECK_FALSE(t.note("denied:3", t0 + 31s));
    auto all = t.take_all();
    REQUIRE(all.size() == 1);
    CHECK(all[0].key == "other");
    CHECK(all[0].suppressed == 1);
}

TEST_CASE("vigilctl against the in-process server", "[unit][control][vigilctl]") {
    Fixture f;
    auto run = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"--socket", f.sock});
        auto parsed = ctl::parse_args(args);
        REQUIRE(std::holds_alternative<ctl::Options>(parsed));
        std::ostringstream out, err;
        const int code = ctl::run(std::get<ctl::Options>(parsed), out, err);
        return std::tuple(code, out.str(), err.str());
    };

    {
        auto [code, out, err] = run({"status"});
        CHECK(code == 0);
        CHECK_THAT(out, Contains("State: running (healthy after 42ms)"));
        CHECK_THAT(out, Contains("PID: 4242 (adopted)"));
        CHECK_THAT(out, Contains("OOM score: configured -500, actual -500"));
    }
    {
        auto [code, out, err] = run({"--json", "status"});
        CHECK(code == 0);
        CHECK(std::count(out.begin(), out.end(), '\n') == 1);
        CHECK_THAT(out, Contains(R"("state":"running")"));
        CHECK_THAT(out, Contains(R"("restart_count":3)"));
        CHECK_THAT(out, Contains(R"("consecutive_failures":1)"));
    }
    {
        auto [code, out, err] = run({"--json", "oom-score"});
        CHECK(code == 0);
        CHECK(out == R"({"configured":"-500","configured_inherit":false,"configured_value":-500,)"
                     R"("actual_known":true,"actual":-500})"
                     "\n");
    }
    {
        auto [code, out, err] = run({"oom-score", "-200"});
        CHECK(code == 0);
        CHECK(out == "oom_score_adj set to -200\n");
    }
    // What vigilctl can check itself is a usage error (64) before any call: see "vigilctl:
    // command line".
    {
        auto [code, out, err] = run({"start"});
        CHECK(code == 1);
        CHECK(err == "vigilctl: start: the child is already running (pid 4242)\n");
    }
    {
        auto [code, out, err] = run({"--json", "stop", "--timeout", "1500ms"});
        CHECK(code == 0);
        CHECK(out == "{\"message\":\"stopped pid 4242\"}\n");
        CHECK(f.loop.run([&] { return f.backend.stop_timeout; }) == Duration(1500));
    }
    {
        auto [code, out, err] = run({"logs"});
        CHECK(code == 0);
        CHECK(out.empty());
    }
    {
        auto [code, out, err] = run({"health"});
        CHECK(code == 0);
        CHECK(out == "vigild: SERVING\n");
    }
    {
        auto [code, out, err] = run({"config"});
        CHECK(code == 0);
        CHECK(out == "[daemon]\nstate_dir = \"/run/vigil\"\n"); // as --check-config prints it
        std::tie(code, out, err) = run({"config", "--rejected"});
        CHECK(code == 1);
        CHECK(err == "vigilctl: config: no configuration was rejected: no reload has been rolled "
                     "back\n");
        f.loop.run([&] {
            f.backend.rejected = ControlBackend::ConfigText{"/etc/vigil/vigild.toml", "x = 1\n"};
            return 0;
        });
        std::tie(code, out, err) = run({"config", "--rejected"});
        CHECK(code == 0);
        CHECK(out == "x = 1\n");
        std::tie(code, out, err) = run({"incidents"});
        CHECK(code == 0);
        CHECK(out == "20261130T201500Z-4242  hang   3 health checks failed\n");
        std::tie(code, out, err) = run({"incidents", "20261130T201500Z-4242"});
        CHECK(code == 0);
        CHECK(out == "vigil incident 20261130T201500Z-4242\n");
        std::tie(code, out, err) = run({"incidents", "nope"});
        CHECK(code == 1);
        CHECK(err == "vigilctl: incidents: no incident 'nope'\n");
        std::tie(code, out, err) = run({"metrics"});
        CHECK(code == 0);
        CHECK(out == "vigil_child_up 1\n");
        std::tie(code, out, err) = run({"--json", "config"});
        CHECK(code == 0);
        CHECK(out == R"({"source":"/etc/vigil/vigild.toml","toml":"[daemon]\nstate_dir = )"
                     R"(\"/run/vigil\"\n"})"
                     "\n");
    }
    {
        auto [code, out, err] = run({"--json", "reload"});
        CHECK(code == 0);
        CHECK(out == "{\"message\":\"configuration reloaded\",\"child_restarted\":true}\n");
    }
    {
        auto [code, out, err] = run({"shutdown", "--leave-running"});
        CHECK(code == 0);
        CHECK(f.loop.run([&] { return f.backend.leave; }));
    }
}

TEST_CASE("vigilctl: an unreachable vigild is exit 69 naming the socket", "[unit][vigilctl]") {
    TmpDir dir;
    ctl::Options o;
    o.command = ctl::Command::status;
    o.socket = dir / "nothing-here.sock";
    std::ostringstream out, err;
    CHECK(ctl::run(o, out, err) == ctl::kExitUnreachable);
    CHECK_THAT(err.str(), Contains("cannot reach vigild at " + *o.socket));
    CHECK_THAT(err.str(), Contains("No such file or directory"));
}

TEST_CASE("vigilctl: command line", "[unit][vigilctl]") {
    auto parse = [](std::vector<std::string> a) { return ctl::parse_args(a); };
    auto ok = [&](std::vector<std::string> a) {
        auto p = parse(a);
        INFO((std::holds_alternative<ctl::UsageError>(p) ? std::get<ctl::UsageError>(p).message
                                                         : std::string()));
        REQUIRE(std::holds_alternative<ctl::Options>(p));
        return std::get<ctl::Options>(p);
    };
    auto bad = [&](std::vector<std::string> a) {
        auto p = parse(a);
        REQUIRE(std::holds_alternative<ctl::UsageError>(p));
        return std::get<ctl::UsageError>(p).message;
    };

    auto o = ok({"--socket", "/tmp/x.sock", "--json", "status"});
    CHECK(o.command == ctl::Command::status);
    CHECK(o.socket == "/tmp/x.sock");
    CHECK(o.json);
    o = ok({"status", "--socket=/tmp/y.sock"});
    CHECK(o.socket == "/tmp/y.sock");
    o = ok({"stop", "--timeout=1m30s"});
    CHECK(o.stop_timeout == Duration(90'000));
    o = ok({"kill", "USR1"});
    CHECK(o.signal == "USR1");
    CHECK(ok({"kill", "usr1"}).signal == "USR1");
    CHECK(ok({"kill", "9"}).signal == "9");
    o = ok({"stop", "--for", "2h", "--reason", "disk swap"});
    CHECK(o.hold_for == Duration(7'200'000));
    CHECK(o.reason == "disk swap");
    // Everything vigilctl can check itself is a usage error (exit 64), as vigild would
    // answer it, with a hint where one helps.
    CHECK_THAT(bad({"oom-score", "2000"}), Contains("bad oom-score '2000'"));
    CHECK_THAT(bad({"oom-score", "-1001"}), Contains("-1000..1000"));
    CHECK_THAT(bad({"kill", "0"}), Contains("unknown signal '0'"));
    CHECK_THAT(bad({"kill", "SIGBOGUS"}), Contains("unknown signal 'SIGBOGUS'"));
    CHECK_THAT(bad({"kill", "-9"}), Contains("vigilctl kill 9"));
    CHECK_THAT(bad({"stop", "--timeout", "25h"}), Contains("at most 24h"));
    CHECK_THAT(bad({"stop", "--for", "0s"}), Contains("bad --for"));
    CHECK_THAT(bad({"stop", "--for", "400d"}), Contains("bad --for"));
    o = ok({"oom-score", "-500"});
    CHECK(o.oom == OomScore{false, -500});
    o = ok({"oom-score", "inherit"});
    CHECK(o.oom == OomScore{true, 0});
    CHECK_FALSE(ok({"oom-score"}).oom.has_value());
    CHECK(ok({"logs", "-f"}).follow);
    CHECK(ok({"shutdown", "--leave-running"}).leave_running);
    CHECK(ok({"--help"}).command == ctl::Command::help);
    CHECK(ok({"events"}).command == ctl::Command::events);

    CHECK_THAT(bad({}), Contains("no command"));
    CHECK_THAT(bad({"frobnicate"}), Contains("unknown command 'frobnicate'"));
    CHECK_THAT(bad({"kill"}), Contains("kill needs exactly one SIGNAL"));
    CHECK_THAT(bad({"stop", "--timeout", "soon"}), Contains("bad --timeout 'soon'"));
    CHECK_THAT(bad({"stop", "--timeout"}), Contains("option '--timeout' needs a value"));
    CHECK_THAT(bad({"oom-score", "lots"}), Contains("bad oom-score 'lots'"));
    CHECK_THAT(bad({"status", "-f"}), Contains("unknown option '-f'"));
    CHECK_THAT(bad({"status", "extra"}), Contains("unexpected argument 'extra'"));

    const auto help = ctl::help_text();
    for (const char* cmd :
         {"status", "start", "stop [--timeout D]", "restart", "kill SIGNAL",
          "oom-score [N|inherit]", "events", "logs [-f]", "reload", "shutdown [--leave-running]",
          "health", "--socket PATH", "--json", "VIGIL_SOCKET"})
        CHECK_THAT(help, Contains(cmd));
}

TEST_CASE("vigilctl: human output", "[unit][vigilctl]") {
    ::setenv("TZ", "UTC", 1);
    ::tzset();
    FakeBackend b;
    const auto reply = to_proto(b.snap);
    const auto now = at_ms(1'714'564'800'000 + 182'000); // 3min 2s after the start
    const auto text = ctl::format_status(reply, now);
    const auto killed = describe(ExitStatus{ExitStatus::Kind::signaled, 9});
    CHECK(text == "/usr/bin/containerd - supervised by vigild 0.1.0 (pid 812)\n"
                  "     State: running (healthy after 42ms) since 2024-05-01 12:00:00 UTC; "
                  "3min 1s ago\n"
                  "       PID: 4242 (adopted)\n"
                  "    Uptime: 3min 2s (started 2024-05-01 12:00:00 UTC)\n"
                  "  Restarts: 3\n"
                  " Last exit: " +
                      killed +
                      " at 2024-05-01 11:59:59 UTC\n"
                      "    Health: SERVING, last check 2024-05-01 12:01:40 UTC, 1 consecutive "
                      "failure\n"
                      " OOM score: configured -500, actual -500\n"
                      "   Command: /usr/bin/containerd --config /run/vigil/containerd.toml\n"
                      "    Output: capture\n");

    StatusSnapshot stopped;
    stopped.state = "stopped";
    stopped.oom_configured = OomScore{true, 0};
    const auto s2 = ctl::format_status(to_proto(stopped), now);
    CHECK_THAT(s2, Contains("PID: none"));
    CHECK_THAT(s2, Contains("Last exit: none"));
    CHECK_THAT(s2, Contains("Health: not checked ([health] kind = \"none\")"));
    CHECK_THAT(s2, Contains("OOM score: configured inherit, actual unknown"));

    CHECK(ctl::format_uptime(Duration(42)) == "42ms");
    CHECK(ctl::format_uptime(Duration(3'000)) == "3s");
    CHECK(ctl::format_uptime(Duration(3'600'000 + 5 * 60'000)) == "1h 5min");
    CHECK(ctl::format_uptime(Duration(2 * 86'400'000LL + 3'600'000)) == "2d 1h");

    Event e;
    e.seq = 7;
    e.time = at_ms(1'714'564'800'123);
    e.kind = Event::Kind::exit;
    e.message = "child exited: exit code 3";
    e.exit = ExitStatus{ExitStatus::Kind::exited, 3};
    const auto pe = to_proto(e);
    CHECK(ctl::format_event(pe) ==
          "2024-05-01 12:00:00.123 UTC #7 exit: child exited: exit code 3"); // with the zone
    CHECK(pe.exit().kind() == "exited");
    CHECK(pe.exit().code() == 3);
    CHECK(ctl::to_json(pe) ==
          std::string(
              R"({"seq":"7","time":"2024-05-01T12:00:00.123Z","kind":"exit",)"
              R"("message":"child exited: exit code 3","from_state":"","to_state":"","pid":0,)") +
              R"("exit":{"kind":"exited","code":3,"signal":0,"signal_name":"",)"
              R"("description":")" +
              describe(*e.exit) +
              R"(","at":"2024-05-01T12:00:00.123Z","oom_killed":false,)"
              R"("oom_anon_rss_bytes":"0","oom_score_adj":0},)"
              R"("health_result":"","oom_score_known":false,"oom_score":0})");

    LogLine l{1, at_ms(1'714'564'800'000), 99, "stdout", "hello"};
    CHECK(ctl::format_log_line(to_proto(l)) == "2024-05-01 12:00:00.000 UTC [99] stdout: hello");
}

TEST_CASE("control API conversions", "[unit][control]") {
    CHECK(format_rfc3339(at_ms(0)) == "1970-01-01T00:00:00.000Z");
    CHECK(format_rfc3339(at_ms(-1)) == "1969-12-31T23:59:59.999Z");
    CHECK(format_rfc3339(std::optional<SystemTime>()) == "");
    const auto t = at_ms(1'714'564'800'042);
    CHECK(parse_rfc3339(format_rfc3339(t)) == t);
    CHECK(parse_rfc3339("2024-05-01T14:00:00.042+02:00") == t);
    CHECK_FALSE(parse_rfc3339("yesterday").has_value());
    CHECK_FALSE(parse_rfc3339("").has_value());

    CHECK(valid_utf8("plain") == "plain");
    CHECK(valid_utf8("caf\xc3\xa9") == "caf\xc3\xa9");
    CHECK(valid_utf8("\xff") == "\xef\xbf\xbd");
    CHECK(valid_utf8("\xe2\x82") == "\xef\xbf\xbd\xef\xbf\xbd"); // truncated sequence
    CHECK(valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); // surrogate

    CHECK(to_proto(std::nullopt, std::nullopt).kind() == "none");
    const auto unknown = to_proto(ExitStatus{}, std::nullopt);
    CHECK(unknown.kind() == "unknown");
}

TEST_CASE("control socket path: one helper for vigild and vigilctl", "[unit][control]") {
    // vigild's default config names the same socket vigilctl uses by default.
    Config c;
    expand_config(c);
    CHECK(c.daemon.control_socket == default_control_socket());

    ::unsetenv("VIGIL_SOCKET");
    CHECK(resolve_control_socket(std::nullopt) == "/run/vigil/vigild.sock");
    ::setenv("VIGIL_SOCKET", "/tmp/env.sock", 1);
    CHECK(resolve_control_socket(std::nullopt) == "/tmp/env.sock");
    CHECK(resolve_control_socket(std::string("/tmp/flag.sock")) == "/tmp/flag.sock");
    ::setenv("VIGIL_SOCKET", "", 1);
    CHECK(resolve_control_socket(std::nullopt) == "/run/vigil/vigild.sock");
    ::unsetenv("VIGIL_SOCKET");

    CHECK(max_socket_path_length() == 107);
    CHECK(check_socket_path(std::string(107, 'a')).ok());
    CHECK_FALSE(check_socket_path(std::string(108, 'a')).ok());
    CHECK_FALSE(check_socket_path("").ok());
    CHECK(grpc_target("/run/vigil/vigild.sock") == "unix:/run/vigil/vigild.sock");
}

TEST_CASE("control server: gRPC's servers start with the first connection and stop when no "
          "connection came for the idle time",
          "[unit][control]") {
    Fixture f({}, std::nullopt, 300ms);
    CHECK_FALSE(f.grpc_running()); // serving, but nobody has connected yet
    {
        auto stub = f.stub();
        REQUIRE(get_status(*stub).ok());
        CHECK(f.grpc_running());
        // A connection still open keeps them up, however long it stays quiet.
        const auto until = std::chrono::steady_clock::now() + 1s;
        while (std::chrono::steady_clock::now() < until) {
            REQUIRE(f.grpc_running());
            std::this_thread::sleep_for(20ms);
        }
        REQUIRE(get_status(*stub).ok());
    } // the stub and its channel (the connection) go
    REQUIRE(wait_until([&] { return f.stats().served == 0; }));
    CHECK(wait_until([&] { return !f.grpc_running(); }));
    // The next connection builds them again and is served; a watcher works too.
    auto stub = f.stub();
    CHECK(get_status(*stub).ok());
    CHECK(f.grpc_running());
    grpc::ClientContext ctx;
    auto watch = stub->WatchEvents(&ctx, v1::WatchEventsRequest());
    REQUIRE(wait_until([&] { return f.event_subscribers() == 1; }));
    ctx.TryCancel();
    watch->Finish();
}

TEST_CASE("control server: a first connection at the fd limit builds gRPC's servers from the "
          "reserve instead of aborting",
          "[unit][control]") {
    ConnectionLimits limits = ConnectionLimits::from_fd_limit(1'048'576, 0);
    Fixture f({}, limits);
    REQUIRE_FALSE(f.grpc_running());
    // Take every free slot, then give back three: the client's socket, the accepted
    // connection and vigild's duplicate that watches it. gRPC's own (an epoll set, an
    // eventfd) can only come from the reserve.
    FdSqueeze squeeze(16);
    squeeze.give_back(3);
    UniqueFd conn(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, f.sock.c_str());
    const bool connected =
        conn.valid() && ::connect(conn.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    const bool served = connected && wait_until([&] { return f.stats().served == 1; });
    const bool running = f.grpc_running();
    REQUIRE(squeeze.release());
    REQUIRE(squeeze.taken() >= 3);
    REQUIRE(connected);
    CHECK(served);
    CHECK(running);
    conn.reset();
    CHECK(get_status(*f.stub()).ok());
}
