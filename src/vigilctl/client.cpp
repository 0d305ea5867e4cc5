// vigilctl's calls to vigild.
#include "vigil/ctl.hpp"
#include "vigil/socket_path.hpp"
#include "vigil/unique_fd.hpp"

#include "grpc/health/v1/health.grpc.pb.h"
#include "vigil/v1/supervisor.grpc.pb.h"

#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <iostream>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <thread>

namespace vigil::ctl {

namespace {

// Quick questions (status, kill, oom-score, health) get an answer within this or vigild is
// considered unreachable. Commands that wait for the child (start, stop, restart, reload,
// shutdown) and streams have no deadline: vigild bounds them itself.
constexpr std::chrono::seconds kQuickDeadline{10};
// Connecting waits at most this long for room in vigild's listen backlog (a vigild that is
// hung, or flooded, accepts nothing): vigilctl never blocks in connect() past it.
constexpr std::chrono::seconds kConnectDeadline{10};

std::string_view command_name(Command c) {
    switch (c) {
    case Command::status:
        return "status";
    case Command::start:
        return "start";
    case Command::stop:
        return "stop";
    case Command::restart:
        return "restart";
    case Command::kill:
        return "kill";
    case Command::oom_score:
        return "oom-score";
    case Command::events:
        return "events";
    case Command::logs:
        return "logs";
    case Command::reload:
        return "reload";
    case Command::shutdown:
        return "shutdown";
    case Command::health:
        return "health";
    case Command::config:
        return "config";
    case Command::metrics:
        return "metrics";
    case Command::incidents:
        return "incidents";
    case Command::help:
        return "help";
    case Command::version:
        return "version";
    }
    return "?";
}

// Connects to vigild's socket, waiting for room in its listen backlog no longer than
// kConnectDeadline: a blocking AF_UNIX connect() honours SO_SNDTIMEO and fails with EAGAIN
// when it runs out, and wakes as soon as vigild accepts. The fd, or why not.
Result<UniqueFd> connect_to(const std::string& path) {
    if (auto st = check_socket_path(path); !st)
        return st.error();
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return make_error(errno, "failed to create a socket");
    timeval tv{};
    tv.tv_sec = kConnectDeadline.count();
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return make_error(errno, "failed to set the connect timeout");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    int rc = 0;
    do
        rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return make_error(fmt::format("no room in its listen backlog within {}s: vigild is "
                                          "not accepting connections (hung, or flooded by other "
                                          "clients)",
                                          kConnectDeadline.count()));
        return make_error(errno, "connect failed");
    }
    tv = {};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

// How many past events `vigilctl events` shows before the new ones, without -n.
constexpr unsigned kEventsReplay = 10;

class Client {
public:
    Client(const Options& opts, std::ostream& out, std::ostream& err, Interrupt* interrupt)
        : opts_(opts), out_(out), err_(err), interrupt_(interrupt),
          socket_(resolve_control_socket(opts.socket)) {}

    int run() {
        // One connection, made here with a deadline; gRPC gets the connected fd (and owns
        // it), so no call ever waits in a connect() of gRPC's.
        auto fd = connect_to(socket_);
        if (!fd) {
            const Error& e = fd.error();
            if (e.code == std::errc::permission_denied) {
                // vigild may well be running: this user may not reach its socket.
                err_ << fmt::format(
                    "vigilctl: permission denied on {}: vigild's control socket is open to "
                    "root, vigild's user and the members of [daemon] control_socket_group "
                    "(run as root, or ask for that group or for [daemon] allowed_uids)\n",
                    socket_);
                return kExitUnreachable;
            }
            return unreachable(e.code ? e.code.message() : e.context);
        }
        channel_ = grpc::CreateInsecureChannelFromFd(grpc_target(socket_), fd->release());
        stub_ = v1::Supervisor::NewStub(channel_);
        switch (opts_.command) {
        case Command::status:
            return status();
        case Command::start:
            return command([&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                return stub_->Start(ctx, v1::StartRequest(), r);
            });
        case Command::stop:
            return command([&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                v1::StopRequest req;
                if (opts_.stop_timeout) {
                    const auto ms = opts_.stop_timeout->count();
                    req.mutable_timeout()->set_seconds(ms / 1000);
                    req.mutable_timeout()->set_nanos(static_cast<int>(ms % 1000) * 1'000'000);
                }
                if (opts_.hold_for) {
                    const auto ms = opts_.hold_for->count();
                    req.mutable_hold_for()->set_seconds(ms / 1000);
                    req.mutable_hold_for()->set_nanos(static_cast<int>(ms % 1000) * 1'000'000);
                }
                req.set_reason(opts_.reason);
                return stub_->Stop(ctx, req, r);
            });
        case Command::restart:
            return command([&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                return stub_->Restart(ctx, v1::RestartRequest(), r);
            });
        case Command::kill:
            return command(
                [&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                    v1::SignalRequest req;
                    req.set_name(opts_.signal);
                    return stub_->Signal(ctx, req, r);
                },
                true);
        case Command::oom_score:
            if (!opts_.oom)
                return oom_show();
            return command(
                [&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                    v1::SetOomScoreAdjRequest req;
                    if (opts_.oom->inherit)
                        req.set_inherit(true);
                    else
                        req.set_value(opts_.oom->value);
                    return stub_->SetOomScoreAdj(ctx, req, r);
                },
                true);
        case Command::reload:
            return reload();
        case Command::shutdown:
            return command([&](grpc::ClientContext* ctx, v1::CommandReply* r) {
                v1::ShutdownRequest req;
                req.set_leave_child_running(opts_.leave_running);
                return stub_->Shutdown(ctx, req, r);
            });
        case Command::events:
            return follow<v1::Event>(
                [&](grpc::ClientContext* ctx) {
                    // The latest events first (what happened just before), then new ones.
                    v1::WatchEventsRequest req;
                    req.set_replay(opts_.lines_given ? opts_.lines : kEventsReplay);
                    return stub_->WatchEvents(ctx, req);
                },
                [](const v1::Event& e) { return format_event(e); });
        case Command::logs:
            return follow<v1::LogLine>(
                [&](grpc::ClientContext* ctx) {
                    v1::LogsRequest req;
                    req.set_follow(opts_.follow);
                    req.set_lines(opts_.lines);
                    return stub_->Logs(ctx, req);
                },
                [](const v1::LogLine& l) { return format_log_line(l); });
        case Command::health:
            return health();
        case Command::config:
            return config();
        case Command::metrics:
            return metrics();
        case Command::incidents:
            return incidents();
        case Command::help:
        case Command::version:
            break;
        }
        return kExitOk;
    }

private:
    static void set_quick_deadline(grpc::ClientContext& ctx) {
        ctx.set_deadline(std::chrono::system_clock::now() + kQuickDeadline);
    }

    int unreachable(const std::string& why) {
        err_ << fmt::format("vigilctl: cannot reach vigild at {}: {} (is vigild running? "
                            "choose the socket with --socket or $VIGIL_SOCKET)\n",
                            socket_, why);
        return kExitUnreachable;
    }

    int failed(const grpc::Status& st) {
        switch (st.error_code()) {
        case grpc::StatusCode::UNAVAILABLE:
            return unreachable(st.error_message());
        case grpc::StatusCode::DEADLINE_EXCEEDED:
            return unreachable(fmt::format("no answer within {}s", kQuickDeadline.count()));
        default:
            err_ << fmt::format("vigilctl: {}: {}\n", command_name(opts_.command),
                                st.error_message());
            return kExitApiError;
        }
    }

    void print(const google::protobuf::Message& m, const std::string& human) {
        if (opts_.json)
            out_ << to_json(m) << '\n';
        else if (!human.empty())
            out_ << human << (human.back() == '\n' ? "" : "\n");
        out_.flush();
    }

    grpc::Status fetch_status(v1::StatusReply& reply) {
        grpc::ClientContext ctx;
        set_quick_deadline(ctx);
        return stub_->GetStatus(&ctx, v1::GetStatusRequest(), &reply);
    }

    int status() {
        v1::StatusReply reply;
        if (auto st = fetch_status(reply); !st.ok())
            return failed(st);
        print(reply, format_status(reply, std::chrono::system_clock::now()));
        // As `systemctl status`: 3 when the child is not running, so monitoring needs no jq.
        return reply.state() == "running" ? kExitOk : kExitNotRunning;
    }

    int oom_show() {
        v1::StatusReply reply;
        if (auto st = fetch_status(reply); !st.ok())
            return failed(st);
        print(reply.oom(), "oom_score_adj: " + format_oom(reply.oom()));
        return kExitOk;
    }

    template <class Call> int command(Call call, bool quick = false) {
        grpc::ClientContext ctx;
        if (quick)
            set_quick_deadline(ctx);
        v1::CommandReply reply;
        auto st = call(&ctx, &reply);
        if (!st.ok())
            return failed(st);
        print(reply, reply.message());
        return kExitOk;
    }

    int reload() {
        grpc::ClientContext ctx;
        v1::ReloadReply reply;
        auto st = stub_->Reload(&ctx, v1::ReloadRequest(), &reply);
        if (!st.ok())
            return failed(st);
        print(reply, reply.message());
        return kExitOk;
    }

    int config() {
        grpc::ClientContext ctx;
        set_quick_deadline(ctx);
        v1::ConfigReply reply;
        v1::GetConfigRequest req;
        req.set_rejected(opts_.rejected);
        if (auto st = stub_->GetConfig(&ctx, req, &reply); !st.ok())
            return failed(st);
        print(reply, reply.toml()); // the TOML alone: it can be saved and used as a file
        return kExitOk;
    }

    int incidents() {
        grpc::ClientContext ctx;
        set_quick_deadline(ctx);
        v1::IncidentsRequest req;
        req.set_id(opts_.incident);
        v1::IncidentsReply reply;
        if (auto st = stub_->GetIncidents(&ctx, req, &reply); !st.ok())
            return failed(st);
        if (!opts_.incident.empty()) {
            print(reply, reply.report());
            return kExitOk;
        }
        std::string human;
        for (const auto& i : reply.incidents())
            human += fmt::format("{}  {:<5}  {}\n", i.id(), i.kind(), i.reason());
        print(reply, human.empty() ? "no incident reports" : human);
        return kExitOk;
    }

    int metrics() {
        grpc::ClientContext ctx;
        set_quick_deadline(ctx);
        v1::MetricsReply reply;
        if (auto st = stub_->GetMetrics(&ctx, v1::GetMetricsRequest(), &reply); !st.ok())
            return failed(st);
        print(reply, reply.text());
        return kExitOk;
    }

    int health() {
        auto stub = grpc::health::v1::Health::NewStub(channel_);
        grpc::ClientContext ctx;
        set_quick_deadline(ctx);
        grpc::health::v1::HealthCheckResponse reply;
        auto st = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &reply);
        if (!st.ok())
            return failed(st);
        const auto name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(reply.status());
        print(reply, "vigild: " + name);
        return reply.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk
                                                                                : kExitApiError;
    }

    template <class Msg, class Open, class Format> int follow(Open open, Format format) {
        grpc::ClientContext ctx;
        if (interrupt_ != nullptr)
            interrupt_->attach(&ctx);
        auto reader = open(&ctx);
        Msg msg;
        while (reader->Read(&msg))
            print(msg, format(msg));
        auto st = reader->Finish();
        if (interrupt_ != nullptr) {
            interrupt_->detach();
            if (interrupt_->triggered())
                return kExitOk;
        }
        if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
            st.error_message().find("shutting down") != std::string::npos) {
            // A clean end of the stream, not an unreachable vigild.
            err_ << fmt::format("vigilctl: {}: vigild shut down; the stream ended\n",
                                command_name(opts_.command));
            return kExitUnreachable;
        }
        if (!st.ok())
            return failed(st);
        return kExitOk;
    }

    const Options& opts_;
    std::ostream& out_;
    std::ostream& err_;
    Interrupt* interrupt_;
    std::string socket_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<v1::Supervisor::Stub> stub_;
};

} // namespace

void Interrupt::attach(grpc::ClientContext* ctx) {
    std::lock_guard lk(mu_);
    ctx_ = ctx;
    if (triggered_)
        ctx_->TryCancel();
}

void Interrupt::detach() {
    std::lock_guard lk(mu_);
    ctx_ = nullptr;
}

void Interrupt::trigger() {
    std::lock_guard lk(mu_);
    triggered_ = true;
    if (ctx_ != nullptr)
        ctx_->TryCancel();
}

int run(const Options& opts, std::ostream& out, std::ostream& err, Interrupt* interrupt) {
    try {
        return Client(opts, out, err, interrupt).run();
    } catch (const std::exception& e) {
        err << "vigilctl: " << e.what() << '\n';
        return kExitApiError;
    }
}

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    auto parsed = parse_args(args);
    if (auto* e = std::get_if<UsageError>(&parsed)) {
        std::cerr << "vigilctl: " << e->message << "\nTry 'vigilctl --help'.\n";
        return kExitUsage;
    }
    const auto& opts = std::get<Options>(parsed);
    if (opts.command == Command::help) {
        std::cout << help_text(opts.help_topic);
        return kExitOk;
    }
    if (opts.command == Command::version) {
        std::cout << "vigilctl " << VIGIL_VERSION << '\n';
        return kExitOk;
    }
    // gRPC's own log lines would only repeat what vigilctl says on failure.
    ::setenv("GRPC_VERBOSITY", "NONE", 0);

    // SIGINT/SIGTERM end a following stream cleanly (exit 0): they are blocked in every
    // thread (set before gRPC starts its threads) and taken by one waiting thread.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // Other commands are simply abandoned, with the usual 128+N status.
    const bool streaming = opts.command == Command::events || opts.command == Command::logs;
    static Interrupt interrupt; // outlives the detached signal thread
    std::thread([set, streaming] {
        int sig = 0;
        if (::sigwait(&set, &sig) != 0)
            return;
        if (!streaming)
            std::_Exit(128 + sig);
        interrupt.trigger();
    }).detach();
    return run(opts, std::cout, std::cerr, &interrupt);
}

} // namespace vigil::ctl
