#include "vigil/control_server.hpp"
#include "vigil/control_socket.hpp"

#include "vigil/control_proto.hpp"
#include "vigil/log.hpp"
#include "vigil/socket_path.hpp"
#include "vigil/unique_fd.hpp"

#include "vigil/v1/supervisor.grpc.pb.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <mutex>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace vigil {

namespace {

// A watcher (WatchEvents, Logs -f) may fall this many messages behind; one more and it is
// finished with RESOURCE_EXHAUSTED, so a client that never reads costs a bounded amount of
// memory and never slows the loop or the other clients.
constexpr std::size_t kWatcherQueueLimit = 1024;
// On shutdown gRPC waits this long for calls still open (a stream whose client does not
// read cannot take its final status), then cancels them.
constexpr std::chrono::milliseconds kShutdownGrace{1000};
// gRPC's servers (and their threads, which wake a few times a second) are stopped after this
// long without a control connection, and built again by the next one.
constexpr std::chrono::seconds kGrpcIdleTeardown{60};
// Building the servers takes a few fds (an epoll set, an eventfd), and gRPC aborts the
// process when it cannot get them: this many are held in reserve (/dev/null) and given up
// just before a build, so a first connection at the fd limit is served or shed, never fatal.
constexpr int kGrpcFdReserve = 8;
// After an accept() failure such as EMFILE, wait before trying again instead of spinning.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
// Connections accepted per loop turn before other handlers get their turn.
constexpr int kMaxAcceptsPerTurn = 32;
// Fewer served connections than this (from a low RLIMIT_NOFILE) is worth a warning.
constexpr std::size_t kFewConnections = 8;
// The longest signal name a Signal request may carry ("SIGRTMIN+15" is 11 bytes).
constexpr std::size_t kMaxSignalNameBytes = 32;
// Client text quoted back in an error message is cut to this many bytes, with an ellipsis.
constexpr std::size_t kMaxEchoBytes = 40;
// The largest request message vigild reads: requests are a few bytes; this bounds what one
// call can make vigild allocate (gRPC's default is 4 MiB).
constexpr int kMaxRequestBytes = 256 * 1024;
constexpr int kMinSignal = 1;
constexpr int kMaxSignal = 64;
constexpr int kMinOomScore = -1000;
constexpr int kMaxOomScore = 1000;
// The longest stop timeout a Stop may ask for: a day is beyond any graceful stop, and far
// inside what the loop's timers can represent.
constexpr std::int64_t kMaxDurationSeconds = 24 * 3600;
constexpr std::int32_t kNanosPerSecond = 1'000'000'000;

constexpr const char* kShuttingDown = "vigild is shutting down";
constexpr const char* kDenied = "permission denied: vigild's control API is open to root, "
                                "vigild's own user and [daemon] allowed_uids only";
constexpr const char* kBusy = "vigild's control socket is at its connection limit (too many "
                              "connections open, or too many of this uid's): close idle "
                              "connections and retry";

grpc::Status shutting_down() {
    return {grpc::StatusCode::UNAVAILABLE, kShuttingDown};
}

grpc::Status invalid(std::string message) {
    return {grpc::StatusCode::INVALID_ARGUMENT, std::move(message)};
}

grpc::Status to_grpc(const CommandOutcome& o) {
    switch (o.code) {
    case CommandOutcome::Code::ok:
        return grpc::Status::OK;
    case CommandOutcome::Code::invalid_argument:
        return {grpc::StatusCode::INVALID_ARGUMENT, valid_utf8(o.message)};
    case CommandOutcome::Code::failed_precondition:
        return {grpc::StatusCode::FAILED_PRECONDITION, valid_utf8(o.message)};
    case CommandOutcome::Code::internal:
        return {grpc::StatusCode::INTERNAL, valid_utf8(o.message)};
    }
    return {grpc::StatusCode::INTERNAL, "unknown command outcome"};
}

// Request validation: pure, so it runs on the gRPC thread and a bad request never
// reaches the loop.

Result<std::optional<Duration>> stop_timeout_from(const v1::StopRequest& req) {
    if (!req.has_timeout())
        return std::optional<Duration>();
    const auto& d = req.timeout();
    if (d.seconds() < 0 || d.nanos() < 0)
        return make_error("stop timeout must not be negative");
    if (d.seconds() > kMaxDurationSeconds || d.nanos() >= kNanosPerSecond)
        return make_error("stop timeout is out of range (at most 24h)");
    using namespace std::chrono;
    return std::optional<Duration>(
        duration_cast<Duration>(seconds(d.seconds()) + nanoseconds(d.nanos())));
}

// The hold a Stop may ask for: a year at most.
constexpr std::int64_t kMaxHoldSeconds = 365LL * 24 * 3600;
constexpr std::size_t kMaxReasonBytes = 1024;

Result<ControlBackend::StopArgs> stop_args_from(const v1::StopRequest& req) {
    ControlBackend::StopArgs args;
    auto timeout = stop_timeout_from(req);
    if (!timeout)
        return timeout.error();
    args.timeout = *timeout;
    if (req.has_hold_for()) {
        const auto& d = req.hold_for();
        if (d.seconds() < 0 || d.nanos() < 0 || (d.seconds() == 0 && d.nanos() == 0))
            return make_error("hold_for must be greater than 0");
        if (d.seconds() > kMaxHoldSeconds || d.nanos() >= kNanosPerSecond)
            return make_error("hold_for is out of range (at most 365 days)");
        using namespace std::chrono;
        args.hold_for = duration_cast<Duration>(seconds(d.seconds()) + nanoseconds(d.nanos()));
    }
    if (req.reason().size() > kMaxReasonBytes)
        return make_error(
            fmt::format("reason is {} bytes; at most {}", req.reason().size(), kMaxReasonBytes));
    if (req.reason().find_first_of("\n\r") != std::string::npos)
        return make_error("reason must be one line");
    args.reason = valid_utf8(req.reason());
    return args;
}

// `s` as valid UTF-8, cut to at most `max` bytes (on a character boundary) plus "…".
std::string abbreviate(std::string_view s, std::size_t max) {
    constexpr std::string_view kEllipsis = "\xE2\x80\xA6"; // U+2026
    if (s.size() <= max)
        return valid_utf8(s);
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut; // not inside a multi-byte character
    return valid_utf8(s.substr(0, cut)) + std::string(kEllipsis);
}

Result<int> signal_from(const v1::SignalRequest& req) {
    switch (req.signal_case()) {
    case v1::SignalRequest::kNumber:
        if (req.number() < kMinSignal || req.number() > kMaxSignal)
            return make_error(fmt::format("signal number {} is out of range ({}..{})", req.number(),
                                          kMinSignal, kMaxSignal));
        return req.number();
    case v1::SignalRequest::kName:
        if (req.name().size() > kMaxSignalNameBytes)
            return make_error(fmt::format("signal name '{}' is too long ({} bytes; at most {})",
                                          abbreviate(req.name(), kMaxEchoBytes), req.name().size(),
                                          kMaxSignalNameBytes));
        if (auto sig = parse_signal(req.name()))
            return *sig;
        return make_error(fmt::format("unknown signal '{}' (use a name such as SIGTERM or "
                                      "USR1, or a number {}..{})",
                                      abbreviate(req.name(), kMaxEchoBytes), kMinSignal,
                                      kMaxSignal));
    case v1::SignalRequest::SIGNAL_NOT_SET:
        break;
    }
    return make_error("no signal given (set number or name)");
}

Result<OomScore> oom_score_from(const v1::SetOomScoreAdjRequest& req) {
    switch (req.score_case()) {
    case v1::SetOomScoreAdjRequest::kValue:
        if (req.value() < kMinOomScore || req.value() > kMaxOomScore)
            return make_error(fmt::format("oom_score_adj {} is out of range ({}..{})", req.value(),
                                          kMinOomScore, kMaxOomScore));
        return OomScore{false, req.value()};
    case v1::SetOomScoreAdjRequest::kInherit:
        if (!req.inherit())
            return make_error("inherit must be true when set (or give a value)");
        return OomScore{true, 0};
    case v1::SetOomScoreAdjRequest::SCORE_NOT_SET:
        break;
    }
    return make_error("no score given (set value or inherit)");
}

// A server-streaming call: a bounded queue of messages fed by the loop (backend
// subscriptions) and drained one write at a time by gRPC's completions.
//
// Locking: `mu_` guards everything; gRPC operations are started outside it. That is safe
// because the reactor lives until OnDone, OnDone follows Finish, and Finish is called only
// by the thread that set `finished_` while no operation was in flight: whoever starts an
// operation knows the reactor cannot go away before it completes.
class StreamBase {
public:
    virtual ~StreamBase() = default;
    // Drops what is queued and finishes with `status` once the write in flight (if any)
    // completes. The first finish wins.
    virtual void finish_now(grpc::Status status) = 0;
    virtual bool ended() = 0;
};

template <class Msg>
class Stream final : public StreamBase, public std::enable_shared_from_this<Stream<Msg>> {
public:
    // Called once, outside the lock, when the stream stops wanting messages (finishing,
    // cancelled or overflowed): the owner drops its subscription then.
    using EndHook = std::function<void()>;

    Stream(std::size_t limit, std::string what) : limit_(limit), what_(std::move(what)) {}

    // The reactor handed to gRPC; it owns a reference to the stream until OnDone.
    static std::pair<std::shared_ptr<Stream>, grpc::ServerWriteReactor<Msg>*>
    create(std::size_t limit, std::string what) {
        auto stream = std::make_shared<Stream>(limit, std::move(what));
        auto* reactor = new Reactor(stream);
        stream->reactor_ = reactor;
        return {stream, reactor};
    }

    void set_end_hook(EndHook hook) {
        std::unique_lock lk(mu_);
        end_hook_ = std::move(hook);
    }

    // Loop thread (a backend subscription). Returns false when the stream no longer takes
    // messages.
    bool push(Msg msg) {
        std::unique_lock lk(mu_);
        if (finish_ || finished_ || cancelled_)
            return false;
        if (queue_.size() >= limit_) {
            const std::size_t dropped = queue_.size() + 1;
            queue_.clear();
            finish_ = grpc::Status(
                grpc::StatusCode::RESOURCE_EXHAUSTED,
                fmt::format("{} queue overflow: {} {}s dropped (this client fell more than {} "
                            "behind; reconnect to resume)",
                            what_, dropped, what_, limit_));
            pump(lk);
            return false;
        }
        queue_.push_back(std::move(msg));
        pump(lk);
        return true;
    }

    // Loop thread: messages that exist before the subscription (Logs' captured lines). They
    // do not count against the limit.
    void push_backlog(std::vector<Msg> msgs) {
        std::unique_lock lk(mu_);
        if (finish_ || finished_ || cancelled_)
            return;
        limit_ += msgs.size();
        for (auto& m : msgs)
            queue_.push_back(std::move(m));
        pump(lk);
    }

    // Sends the response headers now, so a client knows it is subscribed before the first
    // message (ClientReader::WaitForInitialMetadata). No-op once anything was sent.
    void announce() {
        std::unique_lock lk(mu_);
        if (!started_ && !finish_ && !finished_ && !cancelled_)
            announce_ = true;
        pump(lk);
    }

    // Finishes with `status` after everything queued has been written.
    void finish_after_drain(grpc::Status status) {
        std::unique_lock lk(mu_);
        if (finish_ || finished_)
            return;
        finish_ = std::move(status);
        pump(lk);
    }

    void finish_now(grpc::Status status) override {
        std::unique_lock lk(mu_);
        if (finish_ || finished_)
            return;
        queue_.clear();
        finish_ = std::move(status);
        pump(lk);
    }

    bool ended() override {
        std::unique_lock lk(mu_);
        return finish_ || finished_ || cancelled_;
    }

private:
    class Reactor final : public grpc::ServerWriteReactor<Msg> {
    public:
        explicit Reactor(std::shared_ptr<Stream> s) : s_(std::move(s)) {}
        void OnSendInitialMetadataDone(bool ok) override { s_->on_op_done(ok); }
        void OnWriteDone(bool ok) override { s_->on_op_done(ok); }
        void OnCancel() override { s_->on_cancel(); }
        void OnDone() override {
            s_->on_done();
            delete this;
        }

    private:
        std::shared_ptr<Stream> s_;
    };

    void on_op_done(bool ok) {
        std::unique_lock lk(mu_);
        op_in_flight_ = false;
        if (!ok)
            cancelled_ = true; // the client is gone: nothing more can be written
        pump(lk);
    }

    void on_cancel() {
        std::unique_lock lk(mu_);
        cancelled_ = true;
        pump(lk);
    }

    void on_done() {
        std::unique_lock lk(mu_);
        reactor_ = nullptr;
    }

    // Starts the next gRPC operation if none is in flight. Unlocks `lk`.
    void pump(std::unique_lock<std::mutex>& lk) {
        EndHook hook;
        if ((finish_ || cancelled_) && end_hook_)
            hook = std::exchange(end_hook_, nullptr);
        enum class Op { none, metadata, write, finish } op = Op::none;
        grpc::Status status;
        Reactor* reactor = reactor_;
        if (!finished_ && !op_in_flight_ && reactor != nullptr) {
            if (cancelled_) {
                queue_.clear();
                announce_ = false;
                if (!finish_)
                    finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
            }
            if (announce_) {
                announce_ = false;
                started_ = op_in_flight_ = true;
                op = Op::metadata;
            } else if (!queue_.empty()) {
                current_ = std::move(queue_.front());
                queue_.pop_front();
                started_ = op_in_flight_ = true;
                op = Op::write;
            } else if (finish_) {
                finished_ = true;
                status = *finish_;
                op = Op::finish;
            }
        }
        lk.unlock();
        switch (op) {
        case Op::none:
            break;
        case Op::metadata:
            reactor->StartSendInitialMetadata();
            break;
        case Op::write:
            reactor->StartWrite(&current_);
            break;
        case Op::finish:
            reactor->Finish(std::move(status));
            break;
        }
        if (hook)
            hook();
    }

    std::mutex mu_;
    Reactor* reactor_ = nullptr; // until OnDone
    std::deque<Msg> queue_;
    Msg current_; // the message being written; untouched while op_in_flight_
    std::size_t limit_;
    std::string what_;
    bool announce_ = false;
    bool started_ = false; // headers sent (alone or with a write)
    bool op_in_flight_ = false;
    bool cancelled_ = false;
    std::optional<grpc::Status> finish_; // set: finishing (after the queue drains)
    bool finished_ = false;              // Finish called
    EndHook end_hook_;
};

class SupervisorService;

// The servers of rejected connections: every call, known method or not, ends at once with
// one status (PERMISSION_DENIED for a denied peer, RESOURCE_EXHAUSTED past a connection
// limit), so the peer learns why on its first call instead of seeing a dropped connection.
class AnswerAllService final : public grpc::CallbackGenericService {
public:
    AnswerAllService(grpc::StatusCode code, const char* message) : code_(code), message_(message) {}

private:
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
        class Reactor final : public grpc::ServerGenericBidiReactor {
        public:
            explicit Reactor(grpc::Status st) { Finish(std::move(st)); }
            void OnDone() override { delete this; }
        };
        return new Reactor(grpc::Status(code_, message_));
    }

    grpc::StatusCode code_;
    const char* message_;
};

// Tells the CallLedger when a call starts and ends on a connection, for every method of
// every server (grpc.health.v1 included): the idle timeout counts only connections with no
// open call, and a rejected connection is closed once its call has ended (answered).
class CallCounter final : public grpc::experimental::Interceptor {
public:
    // no_sanitize("thread") on the constructor, the destructor and Intercept: gRPC makes
    // this object (and the `methods` it passes) on one of its threads and uses it on
    // others, handing it over inside the uninstrumented libgrpc++, so TSan reports the
    // reads and writes of the object itself (its vptr, started_, id_) as races. gRPC runs
    // one call's interceptor for one hook point at a time and destroys it after the last,
    // so these members need no lock; CallLedger, which threads share, stays instrumented.
    __attribute__((no_sanitize("thread")))
    CallCounter(grpc::experimental::ServerRpcInfo* info, std::shared_ptr<CallLedger> ledger)
        : info_(info), ledger_(std::move(ledger)) {}
    // The interceptor lives as long as the call: its end is the call's end.
    __attribute__((no_sanitize("thread"))) ~CallCounter() override { ledger_->call_ended(id_); }

    __attribute__((no_sanitize("thread"))) void
    Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
        if (!started_ &&
            methods->QueryInterceptionHookPoint(
                grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
            started_ = true;
            try {
                id_ = ledger_->call_started(info_->server_context()->peer());
            } catch (...) {
                id_ = 0; // uncounted: at worst the connection looks idle
            }
        }
        methods->Proceed();
    }

private:
    grpc::experimental::ServerRpcInfo* info_;
    std::shared_ptr<CallLedger> ledger_;
    bool started_ = false;
    CallLedger::Id id_ = 0;
};

class CallCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
public:
    explicit CallCounterFactory(std::shared_ptr<CallLedger> ledger) : ledger_(std::move(ledger)) {}
    grpc::experimental::Interceptor*
    CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
        return new CallCounter(info, ledger_);
    }

private:
    std::shared_ptr<CallLedger> ledger_;
};

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
call_counters(const std::shared_ptr<CallLedger>& ledger) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> v;
    v.push_back(std::make_unique<CallCounterFactory>(ledger));
    return v;
}

// Descriptors open in this process now (/proc/self/fd, less the one reading it).
std::size_t open_fd_count() {
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr)
        return 0;
    std::size_t n = 0;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.')
            ++n;
    ::closedir(d);
    return n > 0 ? n - 1 : 0;
}

} // namespace

namespace detail {

// What the gRPC handlers share with the loop. Outlives the ControlServer while closures
// that hold it are queued; after close() those closures touch nothing but this object.
struct ControlCore : std::enable_shared_from_this<ControlCore> {
    enum class StreamKind { events, logs };
    struct StreamEntry {
        std::shared_ptr<StreamBase> stream;
        StreamKind kind;
        ControlBackend::Subscription sub = 0;
    };

    ControlCore(asio::io_context& io_, ControlBackend& backend_);

    // Any thread: registers a unary call; 0 when closed (the caller finishes it).
    std::uint64_t begin_call(grpc::ServerUnaryReactor* r) {
        std::lock_guard lk(mu);
        if (closed)
            return 0;
        const auto id = next_id++;
        calls.emplace(id, r);
        return id;
    }
    // Any thread: takes the call out of the registry; nullptr when already finished. The
    // one who gets the reactor finishes it: this is what makes Finish happen exactly once.
    grpc::ServerUnaryReactor* claim_call(std::uint64_t id) {
        std::lock_guard lk(mu);
        auto it = calls.find(id);
        if (it == calls.end())
            return nullptr;
        auto* r = it->second;
        calls.erase(it);
        return r;
    }
    bool call_open(std::uint64_t id) {
        std::lock_guard lk(mu);
        return calls.count(id) != 0;
    }
    // Any thread: 0 when closed.
    std::uint64_t begin_stream(std::shared_ptr<StreamBase> s, StreamKind kind) {
        std::lock_guard lk(mu);
        if (closed)
            return 0;
        const auto id = next_id++;
        streams.emplace(id, StreamEntry{std::move(s), kind});
        return id;
    }
    bool stream_open(std::uint64_t id) {
        std::lock_guard lk(mu);
        return streams.count(id) != 0;
    }
    // Loop thread.
    void set_subscription(std::uint64_t id, ControlBackend::Subscription sub) {
        {
            std::lock_guard lk(mu);
            if (auto it = streams.find(id); it != streams.end()) {
                it->second.sub = sub;
                return;
            }
        }
        unsubscribe(StreamEntry{nullptr, StreamKind::events, sub});
    }
    // Loop thread: forgets a stream that ended and drops its subscription.
    void drop_stream(std::uint64_t id) {
        StreamEntry entry;
        {
            std::lock_guard lk(mu);
            auto it = streams.find(id);
            if (it == streams.end())
                return;
            entry = std::move(it->second);
            streams.erase(it);
        }
        unsubscribe(entry);
    }
    void unsubscribe(const StreamEntry& e) {
        if (e.sub == 0)
            return;
        if (e.kind == StreamKind::events)
            backend.unsubscribe_events(e.sub);
        else
            backend.unsubscribe_logs(e.sub);
    }
    std::size_t subscribed_streams() {
        std::lock_guard lk(mu);
        return static_cast<std::size_t>(std::count_if(
            streams.begin(), streams.end(), [](const auto& kv) { return kv.second.sub != 0; }));
    }

    // Loop thread (or the destructor): finishes every open call; calls that arrive later
    // are finished on their gRPC thread. Nothing here needs the loop to run again.
    void close() {
        std::unordered_map<std::uint64_t, grpc::ServerUnaryReactor*> open_calls;
        std::unordered_map<std::uint64_t, StreamEntry> open_streams;
        {
            std::lock_guard lk(mu);
            if (closed)
                return;
            closed = true;
            open_calls.swap(calls);
            open_streams.swap(streams);
        }
        if (server != nullptr) {
            if (auto* health = server->GetHealthCheckService())
                health->SetServingStatus(false);
        }
        for (auto& [id, reactor] : open_calls)
            reactor->Finish(shutting_down());
        for (auto& [id, entry] : open_streams) {
            unsubscribe(entry);
            entry.stream->finish_now(shutting_down());
        }
    }

    template <class Fn> void post(Fn fn) { asio::post(io, std::move(fn)); }

    // Loop thread. Builds the three gRPC servers on first use; true when they serve. No
    // listening port on any server: connections come from vigild's own acceptor, which
    // sorts them by the peer's uid before gRPC sees a byte.
    bool build_servers(const std::shared_ptr<CallLedger>& ledger);
    // Loop thread, once the servers are shut down and gone: fresh services for the next
    // build (a generic service can be registered with one server only).
    void renew_services();

    // Blocks until every call of every server has finished (see shutdown()).
    void shutdown_servers(std::chrono::system_clock::time_point deadline) {
        for (auto* s : {server.get(), deny_server.get(), busy_server.get()})
            if (s != nullptr)
                s->Shutdown(deadline);
    }
    void reset_servers() {
        server.reset();
        deny_server.reset();
        busy_server.reset();
    }

    // The hook a stream calls when it ends: drop it on the loop thread.
    std::function<void()> end_hook(std::uint64_t id) {
        return [weak = weak_from_this(), id] {
            auto self = weak.lock();
            if (!self)
                return;
            {
                std::lock_guard lk(self->mu);
                if (self->closed)
                    return; // close() dropped every stream already
            }
            self->post([self, id] { self->drop_stream(id); });
        };
    }

    asio::io_context& io;
    ControlBackend& backend;

    std::mutex mu;
    bool closed = false;                                                // guarded by mu
    std::uint64_t next_id = 1;                                          // guarded by mu
    std::unordered_map<std::uint64_t, grpc::ServerUnaryReactor*> calls; // guarded by mu
    std::unordered_map<std::uint64_t, StreamEntry> streams;             // guarded by mu

    // Declared before the servers: a service must outlive the server it is registered with.
    std::unique_ptr<SupervisorService> service;
    std::unique_ptr<AnswerAllService> deny;
    std::unique_ptr<AnswerAllService> busy;
    std::unique_ptr<grpc::Server> server;
    std::unique_ptr<grpc::Server> deny_server;
    std::unique_ptr<grpc::Server> busy_server;
    bool build_failed = false; // loop thread
};

} // namespace detail

namespace {

using detail::ControlCore;

// The loop side of one unary call. Copyable: a backend Reply may be copied around.
class PendingCall {
public:
    PendingCall(std::shared_ptr<ControlCore> core, std::uint64_t id)
        : core_(std::move(core)), id_(id) {}

    ControlBackend& backend() const { return core_->backend; }
    bool open() const { return core_->call_open(id_); }

    // Finishes the call unless shutdown did already; `fill` writes the response first
    // (only for OK, and only once the call is ours, so the response is still alive).
    void finish(grpc::Status status, const std::function<void()>& fill = {}) const noexcept {
        auto* reactor = core_->claim_call(id_);
        if (reactor == nullptr)
            return;
        if (status.ok() && fill) {
            try {
                fill();
            } catch (const std::exception& e) {
                status = grpc::Status(grpc::StatusCode::INTERNAL, valid_utf8(e.what()));
            } catch (...) {
                status = grpc::Status(grpc::StatusCode::INTERNAL, "unknown error");
            }
        }
        reactor->Finish(std::move(status));
    }

    void finish(const CommandOutcome& o, v1::CommandReply* resp) const {
        finish(to_grpc(o), [&] { resp->set_message(valid_utf8(o.message)); });
    }

private:
    std::shared_ptr<ControlCore> core_;
    std::uint64_t id_;
};

class SupervisorService final : public v1::Supervisor::CallbackService {
public:
    explicit SupervisorService(ControlCore& core) : core_(core) {}

    grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                        const v1::GetStatusRequest*,
                                        v1::StatusReply* resp) override {
        return unary(ctx, [resp](const PendingCall& call) {
            call.finish(grpc::Status::OK, [&] { *resp = to_proto(call.backend().status()); });
        });
    }

    grpc::ServerUnaryReactor* GetIncidents(grpc::CallbackServerContext* ctx,
                                           const v1::IncidentsRequest* req,
                                           v1::IncidentsReply* resp) override {
        if (req->id().size() > 64)
            return reject(ctx, invalid("an incident id has at most 64 characters"));
        return unary(ctx, [resp, id = req->id()](const PendingCall& call) {
            if (!id.empty()) {
                std::string why;
                auto text = call.backend().incident(id, why);
                if (!text) {
                    call.finish(grpc::Status(grpc::StatusCode::NOT_FOUND, valid_utf8(why)));
                    return;
                }
                call.finish(grpc::Status::OK, [&] { resp->set_report(valid_utf8(*text)); });
                return;
            }
            call.finish(grpc::Status::OK, [&] {
                for (const auto& e : call.backend().incidents()) {
                    auto* s = resp->add_incidents();
                    s->set_id(valid_utf8(e.id));
                    s->set_kind(valid_utf8(e.kind));
                    s->set_reason(valid_utf8(e.reason));
                }
            });
        });
    }

    grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* ctx,
                                         const v1::GetMetricsRequest*,
                                         v1::MetricsReply* resp) override {
        return unary(ctx, [resp](const PendingCall& call) {
            call.finish(grpc::Status::OK,
                        [&] { resp->set_text(valid_utf8(call.backend().metrics_text())); });
        });
    }

    grpc::ServerUnaryReactor* GetConfig(grpc::CallbackServerContext* ctx,
                                        const v1::GetConfigRequest* req,
                                        v1::ConfigReply* resp) override {
        return unary(ctx, [resp, rejected = req->rejected()](const PendingCall& call) {
            std::optional<ControlBackend::ConfigText> text;
            if (rejected) {
                text = call.backend().rejected_config();
                if (!text) {
                    call.finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                             "no configuration was rejected: no reload has "
                                             "been rolled back"));
                    return;
                }
            }
            call.finish(grpc::Status::OK, [&] {
                auto c = text ? *text : call.backend().effective_config();
                resp->set_source(valid_utf8(c.source));
                resp->set_toml(valid_utf8(c.toml));
            });
        });
    }

    grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* ctx, const v1::StartRequest*,
                                    v1::CommandReply* resp) override {
        return unary(ctx, [resp](const PendingCall& call) {
            call.backend().start([call, resp](CommandOutcome o) { call.finish(o, resp); });
        });
    }

    grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx, const v1::StopRequest* req,
                                   v1::CommandReply* resp) override {
        auto args = stop_args_from(*req);
        if (!args)
            return reject(ctx, invalid(args.error().message()));
        return unary(ctx, [resp, a = std::move(*args)](const PendingCall& call) {
            call.backend().stop(a, [call, resp](CommandOutcome o) { call.finish(o, resp); });
        });
    }

    grpc::ServerUnaryReactor* Restart(grpc::CallbackServerContext* ctx, const v1::RestartRequest*,
                                      v1::CommandReply* resp) override {
        return unary(ctx, [resp](const PendingCall& call) {
            call.backend().restart([call, resp](CommandOutcome o) { call.finish(o, resp); });
        });
    }

    grpc::ServerUnaryReactor* Signal(grpc::CallbackServerContext* ctx, const v1::SignalRequest* req,
                                     v1::CommandReply* resp) override {
        auto sig = signal_from(*req);
        if (!sig)
            return reject(ctx, invalid(sig.error().message()));
        return unary(ctx, [resp, sig = *sig](const PendingCall& call) {
            call.finish(call.backend().signal(sig), resp);
        });
    }

    grpc::ServerUnaryReactor* SetOomScoreAdj(grpc::CallbackServerContext* ctx,
                                             const v1::SetOomScoreAdjRequest* req,
                                             v1::CommandReply* resp) override {
        auto score = oom_score_from(*req);
        if (!score)
            return reject(ctx, invalid(score.error().message()));
        return unary(ctx, [resp, score = *score](const PendingCall& call) {
            call.finish(call.backend().set_oom_score(score), resp);
        });
    }

    grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* ctx, const v1::ReloadRequest*,
                                     v1::ReloadReply* resp) override {
        return unary(ctx, [resp](const PendingCall& call) {
            call.backend().reload([call, resp](ReloadOutcome r) {
                call.finish(to_grpc(r.outcome), [&] {
                    resp->set_message(valid_utf8(r.outcome.message));
                    resp->set_child_restarted(r.child_restarted);
                });
            });
        });
    }

    grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx,
                                       const v1::ShutdownRequest* req,
                                       v1::CommandReply* resp) override {
        return unary(ctx, [resp, leave = req->leave_child_running()](const PendingCall& call) {
            call.backend().shutdown(leave,
                                    [call, resp](CommandOutcome o) { call.finish(o, resp); });
        });
    }

    grpc::ServerWriteReactor<v1::Event>* WatchEvents(grpc::CallbackServerContext*,
                                                     const v1::WatchEventsRequest* req) override {
        return stream<v1::Event>(
            ControlCore::StreamKind::events, "event",
            [replay = req->replay()](ControlCore& core, std::uint64_t id,
                                     const std::shared_ptr<Stream<v1::Event>>& stream) {
                // The replay, then new events: taken in one loop turn,
                // so none is missed or sent twice.
                std::vector<v1::Event> backlog;
                const auto recent = core.backend.recent_events();
                const std::size_t skip = recent.size() > replay ? recent.size() - replay : 0;
                for (std::size_t i = skip; i < recent.size(); ++i)
                    backlog.push_back(to_proto(recent[i]));
                std::weak_ptr<Stream<v1::Event>> weak = stream;
                const auto sub = core.backend.subscribe_events([weak](const Event& e) {
                    if (auto s = weak.lock())
                        s->push(to_proto(e));
                });
                core.set_subscription(id, sub);
                stream->announce();
                stream->push_backlog(std::move(backlog));
            });
    }

    grpc::ServerWriteReactor<v1::LogLine>* Logs(grpc::CallbackServerContext*,
                                                const v1::LogsRequest* req) override {
        return stream<v1::LogLine>(
            ControlCore::StreamKind::logs, "log line",
            [follow = req->follow(),
             last = req->lines()](ControlCore& core, std::uint64_t id,
                                  const std::shared_ptr<Stream<v1::LogLine>>& stream) {
                const auto mode = core.backend.status().output_mode;
                if (mode != "capture") {
                    stream->finish_now(grpc::Status(
                        grpc::StatusCode::FAILED_PRECONDITION,
                        fmt::format("the child's output is not captured ([child] output = "
                                    "\"{}\"): it goes to vigild's own stdout and stderr (under "
                                    "systemd: journalctl -u vigild); set output = \"capture\" "
                                    "to keep its lines here",
                                    valid_utf8(mode))));
                    return;
                }
                std::vector<v1::LogLine> backlog;
                const auto lines = core.backend.log_lines();
                const std::size_t skip = last != 0 && lines.size() > last ? lines.size() - last : 0;
                for (std::size_t i = skip; i < lines.size(); ++i)
                    backlog.push_back(to_proto(lines[i]));
                if (follow) {
                    // Same loop turn as log_lines(): no line is missed or sent twice.
                    std::weak_ptr<Stream<v1::LogLine>> weak = stream;
                    const auto sub = core.backend.subscribe_logs([weak](const LogLine& l) {
                        if (auto s = weak.lock())
                            s->push(to_proto(l));
                    });
                    core.set_subscription(id, sub);
                    stream->announce();
                }
                stream->push_backlog(std::move(backlog));
                if (!follow)
                    stream->finish_after_drain(grpc::Status::OK);
            });
    }

private:
    static grpc::ServerUnaryReactor* reject(grpc::CallbackServerContext* ctx, grpc::Status status) {
        auto* reactor = ctx->DefaultReactor();
        reactor->Finish(std::move(status));
        return reactor;
    }

    // Registers the call, then runs `work` on the loop thread. The call is finished by
    // `work` (through PendingCall), by close(), or here when it cannot even be queued.
    template <class Work>
    grpc::ServerUnaryReactor* unary(grpc::CallbackServerContext* ctx, Work work) noexcept {
        auto* reactor = ctx->DefaultReactor();
        std::uint64_t id = 0;
        try {
            id = core_.begin_call(reactor);
            if (id == 0) {
                reactor->Finish(shutting_down());
                return reactor;
            }
            core_.post([core = core_.shared_from_this(), id, work = std::move(work)] {
                PendingCall call(core, id);
                if (!call.open())
                    return; // finished by shutdown while queued
                try {
                    work(call);
                } catch (const std::exception& e) {
                    call.finish(grpc::Status(grpc::StatusCode::INTERNAL, valid_utf8(e.what())));
                } catch (...) {
                    call.finish(grpc::Status(grpc::StatusCode::INTERNAL, "unknown error"));
                }
            });
        } catch (const std::exception& e) {
            if (id == 0 || core_.claim_call(id) != nullptr)
                reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, valid_utf8(e.what())));
        }
        return reactor;
    }

    // Creates a stream, registers it, then runs `setup` on the loop thread (unless the
    // stream ended or shutdown began meanwhile).
    template <class Msg, class Setup>
    grpc::ServerWriteReactor<Msg>* stream(ControlCore::StreamKind kind, const char* what,
                                          Setup setup) noexcept {
        std::shared_ptr<Stream<Msg>> stream;
        grpc::ServerWriteReactor<Msg>* reactor = nullptr;
        try {
            std::tie(stream, reactor) = Stream<Msg>::create(kWatcherQueueLimit, what);
        } catch (...) {
            // Without a reactor of our own, hand gRPC one that only finishes.
            class Failed final : public grpc::ServerWriteReactor<Msg> {
            public:
                Failed() {
                    this->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "out of memory"));
                }
                void OnDone() override { delete this; }
            };
            return new Failed;
        }
        try {
            const auto id = core_.begin_stream(stream, kind);
            if (id == 0) {
                stream->finish_now(shutting_down());
                return reactor;
            }
            stream->set_end_hook(core_.end_hook(id));
            core_.post([core = core_.shared_from_this(), id, stream, setup = std::move(setup)] {
                if (!core->stream_open(id) || stream->ended())
                    return;
                try {
                    setup(*core, id, stream);
                } catch (const std::exception& e) {
                    stream->finish_now(
                        grpc::Status(grpc::StatusCode::INTERNAL, valid_utf8(e.what())));
                } catch (...) {
                    stream->finish_now(grpc::Status(grpc::StatusCode::INTERNAL, "unknown error"));
                }
            });
        } catch (const std::exception& e) {
            stream->finish_now(grpc::Status(grpc::StatusCode::INTERNAL, valid_utf8(e.what())));
        }
        return reactor;
    }

    ControlCore& core_;
};

} // namespace

detail::ControlCore::ControlCore(asio::io_context& io_, ControlBackend& backend_)
    : io(io_), backend(backend_), service(std::make_unique<SupervisorService>(*this)),
      deny(std::make_unique<AnswerAllService>(grpc::StatusCode::PERMISSION_DENIED, kDenied)),
      busy(std::make_unique<AnswerAllService>(grpc::StatusCode::RESOURCE_EXHAUSTED, kBusy)) {}

namespace detail {

void ControlCore::renew_services() {
    service = std::make_unique<SupervisorService>(*this);
    deny = std::make_unique<AnswerAllService>(grpc::StatusCode::PERMISSION_DENIED, kDenied);
    busy = std::make_unique<AnswerAllService>(grpc::StatusCode::RESOURCE_EXHAUSTED, kBusy);
}

bool ControlCore::build_servers(const std::shared_ptr<CallLedger>& ledger) {
    if (busy_server != nullptr)
        return true;
    if (build_failed)
        return false;
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
    builder.experimental().SetInterceptorCreators(call_counters(ledger));
    server = builder.BuildAndStart();
    // The servers of rejected connections: no grpc.health.v1 there either.
    auto answering = [&](grpc::CallbackGenericService* generic) {
        grpc::ServerBuilder b;
        b.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
        b.SetMaxReceiveMessageSize(kMaxRequestBytes);
        b.RegisterCallbackGenericService(generic);
        b.experimental().SetInterceptorCreators(call_counters(ledger));
        return b.BuildAndStart();
    };
    if (server != nullptr)
        deny_server = answering(deny.get());
    if (deny_server != nullptr)
        busy_server = answering(busy.get());
    if (busy_server == nullptr) {
        // A service can be registered with one server only: no second attempt.
        build_failed = true;
        shutdown_servers(std::chrono::system_clock::now());
        reset_servers();
        log::error("control API unavailable: gRPC failed to start its server; connections "
                   "to the control socket are closed (restart vigild)");
        return false;
    }
    return true;
}

} // namespace detail

// ---------------------------------------------------------------------------------------

ControlServer::ControlServer(asio::io_context& io, ControlBackend& backend,
                             ControlServerOptions opts)
    : io_(io), opts_(std::move(opts)), core_(std::make_shared<detail::ControlCore>(io, backend)),
      acceptor_(io), retry_timer_(io), idle_timer_(io), idle_teardown_(kGrpcIdleTeardown),
      alive_(std::make_shared<int>(0)) {}

ControlServer::~ControlServer() {
    if (teardown_thread_.joinable())
        teardown_thread_.join(); // before anything below touches the servers
    if (serving_ && !shutdown_started_) {
        // Last resort (see the header): nothing below needs the loop.
        shutdown_started_ = true;
        stop_accepting();
        core_->close();
        core_->shutdown_servers(std::chrono::system_clock::now() + kShutdownGrace);
    } else if (listen_fd_.valid() && !shutdown_started_) {
        stop_accepting(); // listen() without serve(): the socket file is ours to remove
    }
    if (shutdown_thread_.joinable())
        shutdown_thread_.join();
    // gRPC has let go of every call: no handler can run any more.
    core_->reset_servers();
    if (grpc_initialised_)
        grpc_shutdown();
}

ControlConnections::Stats ControlServer::connection_stats() const {
    return conns_ ? conns_->stats() : ControlConnections::Stats{};
}

void ControlServer::refill_grpc_reserve() {
    while (grpc_reserve_.size() < static_cast<std::size_t>(kGrpcFdReserve)) {
        UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!fd.valid())
            return; // at the limit now: refilled at the next build
        grpc_reserve_.push_back(std::move(fd));
    }
}

bool ControlServer::grpc_running() const {
    return !tearing_down_ && core_->server != nullptr;
}

std::size_t ControlServer::stream_count() const {
    return core_->subscribed_streams();
}

Status ControlServer::start() {
    if (auto st = listen(); !st)
        return st;
    return serve();
}

Status ControlServer::listen() {
    if (serving_ || listen_fd_.valid() || shutdown_started_)
        return make_error(EALREADY, "control server already started");
    auto socket = listen_control_socket(opts_);
    if (!socket)
        return socket.error();
    return adopt(std::move(*socket));
}

Status ControlServer::adopt(ListeningSocket socket) {
    if (serving_ || listen_fd_.valid() || shutdown_started_)
        return make_error(EALREADY, "control server already started");
    listen_fd_ = std::move(socket.fd);
    socket_dev_ = socket.dev;
    socket_ino_ = socket.ino;
    socket_gid_ = socket.gid;
    return ok_status();
}

Status ControlServer::serve() {
    if (!listen_fd_.valid() || serving_ || shutdown_started_)
        return make_error(EINVAL, "control server: serve() needs a successful listen() first");
    const std::string& path = opts_.socket_path;
    const std::optional<gid_t> gid = socket_gid_;
    UniqueFd fd = std::move(listen_fd_);
    auto fail = [&](int err, std::string what) -> Status {
        ::unlink(path.c_str());
        socket_ino_ = 0;
        return make_error(err, std::move(what));
    };
    // The spare fd and the reserve are open before the count, so the limits leave room.
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    refill_grpc_reserve();
    struct rlimit nofile {};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    const ConnectionLimits limits =
        limits_override_ ? *limits_override_
                         : ConnectionLimits::from_fd_limit(nofile.rlim_cur, open_fd_count());
    if (!limits_override_ && limits.max_total < kFewConnections)
        log::warn("the fd limit ({}) leaves room for only {} control connections after the "
                  "reserve kept for the child's spawn (raise LimitNOFILE= or ulimit -n)",
                  nofile.rlim_cur, limits.max_total);
    // gRPC (its core, its servers and all their threads) starts with the first connection,
    // so a vigild nobody talks to runs none of it (see docs/performance.md). Its pollers
    // need fds, and gRPC aborts the process without them: the reserve is given up first.
    conns_ = std::make_unique<ControlConnections>(
        io_, limits, [this](ControlConnections::Route route, int conn_fd) {
            const bool built = core_->server != nullptr;
            if (!built) {
                grpc_reserve_.clear();
                if (!grpc_initialised_) {
                    grpc_init();
                    grpc_initialised_ = true;
                }
            }
            const bool ok = core_->build_servers(conns_->ledger());
            if (!built)
                refill_grpc_reserve();
            if (!ok) {
                // The peer sees its connection end; the watch notices and forgets it.
                ::shutdown(conn_fd, SHUT_RDWR);
                ::close(conn_fd);
                return;
            }
            last_connection_ = std::chrono::steady_clock::now();
            if (!built)
                arm_idle_check(idle_teardown_);
            grpc::Server* s = route == ControlConnections::Route::serve  ? core_->server.get()
                              : route == ControlConnections::Route::deny ? core_->deny_server.get()
                                                                         : core_->busy_server.get();
            grpc::AddInsecureChannelFromFd(s, conn_fd);
        });
    if (auto st = conns_->start(); !st)
        return fail(st.error().code.value(), st.error().context);
    boost::system::error_code ec;
    acceptor_.assign(asio::local::stream_protocol(), fd.get(), ec);
    if (ec)
        return fail(ec.value(), "failed to watch the control socket");
    fd.release();
    serving_ = true;
    start_accept();
    log::info("control API listening on {} (mode {:04o}{}; up to {} connections, {} per uid, "
              "{} rejected at once; fd limit {})",
              path, opts_.mode & 07777,
              gid ? fmt::format(", group {}", opts_.group) : std::string(), limits.max_total,
              limits.max_per_uid, limits.max_rejected, nofile.rlim_cur);
    return ok_status();
}

void ControlServer::start_accept() {
    if (tearing_down_)
        return; // the teardown's end starts accepting again
    acceptor_.async_wait(asio::socket_base::wait_read, [this, alive = std::weak_ptr<int>(alive_)](
                                                           boost::system::error_code ec) {
        if (alive.expired() || shutdown_started_ || ec == asio::error::operation_aborted)
            return;
        if (ec) {
            conns_->note_accept_error(ec.value(), false);
            retry_accept_later();
            return;
        }
        on_acceptable();
    });
}

void ControlServer::retry_accept_later() {
    retry_timer_.expires_after(kAcceptRetryDelay);
    retry_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
            if (alive.expired() || shutdown_started_ || ec)
                return;
            start_accept();
        });
}

bool ControlServer::shed_one() {
    if (!spare_fd_.valid())
        return false;
    spare_fd_.reset();
    const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0)
        ::close(fd);
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return fd >= 0;
}

void ControlServer::on_acceptable() {
    for (int i = 0; i < kMaxAcceptsPerTurn; ++i) {
        const int fd =
            ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            const int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                start_accept();
                return;
            }
            // Out of descriptors: close the pending connection through the spare's slot and
            // go on, so the backlog drains and the peer is not left hanging. Without a spare
            // (or another error), wait a little: never spin on a socket that stays readable.
            if ((err == EMFILE || err == ENFILE) && shed_one()) {
                conns_->note_accept_error(err, true);
                continue;
            }
            conns_->note_accept_error(err, false);
            retry_accept_later();
            return;
        }
        hand_over(fd);
    }
    // More may be waiting: let the loop's other handlers run first.
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
        if (!alive.expired() && !shutdown_started_ && !tearing_down_)
            on_acceptable();
    });
}

void ControlServer::arm_idle_check(std::chrono::steady_clock::duration after) {
    idle_timer_.expires_after(after);
    idle_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
            if (alive.expired() || ec || shutdown_started_ || core_->server == nullptr)
                return;
            const auto stats = conns_->stats();
            const auto quiet = std::chrono::steady_clock::now() - last_connection_;
            if (stats.served + stats.rejected > 0)
                arm_idle_check(idle_teardown_);
            else if (quiet < idle_teardown_)
                arm_idle_check(idle_teardown_ - quiet);
            else
                tear_down_grpc();
        });
}

void ControlServer::tear_down_grpc() {
    // No connection is open, so gRPC has no call: its shutdown is quick, but it joins
    // threads, so it runs on a helper thread. Accepting pauses meanwhile; a connection that
    // comes in waits in the backlog and builds the servers again.
    tearing_down_ = true;
    // The helper thread ends gRPC too (grpc_shutdown joins its threads): from now on it is
    // that thread's to end, never the destructor's.
    const bool end_grpc = grpc_initialised_;
    grpc_initialised_ = false;
    boost::system::error_code ec;
    acceptor_.cancel(ec);
    retry_timer_.cancel();
    auto done = [this, alive = std::weak_ptr<int>(alive_)] {
        if (alive.expired())
            return;
        if (teardown_thread_.joinable())
            teardown_thread_.join();
        tearing_down_ = false;
        if (shutdown_started_)
            return;
        core_->renew_services();
        log::debug("control API: no connection for {}s; gRPC stopped until the next one",
                   std::chrono::duration_cast<std::chrono::seconds>(idle_teardown_).count());
        start_accept();
    };
    // The servers are destroyed there too (that joins gRPC's polling threads); nothing on
    // the loop reads them while tearing_down_ is set.
    auto run = [core = core_, &io = io_, done, end_grpc] {
        core->shutdown_servers(std::chrono::system_clock::now());
        core->reset_servers();
        if (end_grpc)
            grpc_shutdown();
        asio::post(io, done);
    };
    try {
        teardown_thread_ = std::thread(run);
    } catch (const std::system_error& e) {
        log::warn("control server: no thread to stop idle gRPC servers ({}); keeping them",
                  e.what());
        grpc_initialised_ = end_grpc;
        tearing_down_ = false;
        start_accept();
    }
}

void ControlServer::hand_over(int raw_fd) {
    UniqueFd fd(raw_fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        conns_->note_accept_error(errno, false);
        return;
    }
    const bool privileged = cred.uid == 0 || cred.uid == ::geteuid();
    const bool allowed =
        privileged || std::find(opts_.allowed_uids.begin(), opts_.allowed_uids.end(), cred.uid) !=
                          opts_.allowed_uids.end();
    conns_->take(std::move(fd), ControlConnections::Peer{cred.uid, cred.pid, allowed, privileged});
}

void ControlServer::stop_accepting() {
    boost::system::error_code ec;
    retry_timer_.cancel();
    acceptor_.close(ec);
    // gRPC keeps (and closes) the connections it has; vigild stops watching them.
    if (conns_)
        conns_->close_all();
    spare_fd_.reset();
    // Remove the socket only if it is still the one we bound (never another vigild's).
    struct stat st {};
    if (socket_ino_ != 0 && ::lstat(opts_.socket_path.c_str(), &st) == 0 &&
        st.st_dev == socket_dev_ && st.st_ino == socket_ino_)
        ::unlink(opts_.socket_path.c_str());
    socket_ino_ = 0;
}

void ControlServer::shutdown(std::function<void()> done) {
    if (shutdown_started_) {
        if (done) {
            if (shutdown_complete_)
                asio::post(io_, std::move(done));
            else
                waiters_.push_back(std::move(done));
        }
        return;
    }
    shutdown_started_ = true;
    if (done)
        waiters_.push_back(std::move(done));
    idle_timer_.cancel();
    if (teardown_thread_.joinable())
        teardown_thread_.join(); // quick: no connection was open when it began
    stop_accepting();
    core_->close();

    auto complete = [this, alive = std::weak_ptr<int>(alive_)] {
        if (alive.expired())
            return;
        if (shutdown_thread_.joinable())
            shutdown_thread_.join();
        shutdown_complete_ = true;
        auto waiters = std::move(waiters_);
        waiters_.clear();
        for (auto& w : waiters)
            w();
    };
    if (core_->server == nullptr) {
        asio::post(io_, std::move(complete));
        return;
    }
    // gRPC's Shutdown blocks until every call has finished (close() took care of ours; a
    // stream whose client does not read is cancelled after kShutdownGrace), so it runs on
    // a helper thread while the loop keeps turning; `complete` is posted back.
    auto run = [core = core_, &io = io_, complete] {
        core->shutdown_servers(std::chrono::system_clock::now() + kShutdownGrace);
        asio::post(io, complete);
    };
    try {
        shutdown_thread_ = std::thread(run);
    } catch (const std::system_error& e) {
        log::warn("control server: no thread for shutdown ({}); shutting down in place", e.what());
        run();
    }
}

} // namespace vigil
