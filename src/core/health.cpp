#include "vigil/health.hpp"

#include "vigil/grpc_wire.hpp"

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <optional>

namespace vigil {
namespace {

using tcp = asio::ip::tcp;
using generic_stream = asio::generic::stream_protocol;

// Calls in flight on one connection; a probe beyond this fails at once (the scheduler
// starts one per interval, so this is only reached with a child that answers nothing
// and a timeout many intervals long).
constexpr std::size_t kMaxStreams = 64;
// A HealthCheckResponse is 2-3 bytes and its headers a few dozen: anything larger is not
// a health answer, and is not read further.
constexpr std::size_t kMaxBody = 4 * 1024;
constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::size_t kReadBuffer = 16 * 1024;
// Bytes handed to one write at most (a few frames; the rest follows when it completes).
constexpr std::size_t kWriteChunk = 64 * 1024;
// Calls that reached their deadline with not a byte from the peer in between: the
// connection is then given up (after its calls end) and the next probe opens a new one,
// so a hung connection does not pile up streams and queued frames without bound.
constexpr int kRetireAfterSilentDeadlines = 8;

} // namespace

std::string_view to_string(HealthResult r) {
    switch (r) {
    case HealthResult::serving:
        return "SERVING";
    case HealthResult::not_serving:
        return "NOT_SERVING";
    case HealthResult::unknown:
        return "UNKNOWN";
    case HealthResult::service_unknown:
        return "SERVICE_UNKNOWN";
    case HealthResult::deadline_exceeded:
        return "deadline exceeded";
    case HealthResult::connection_refused:
        return "connection refused";
    case HealthResult::unavailable:
        return "unavailable";
    case HealthResult::error:
        return "error";
    }
    return "?";
}

std::string HealthOutcome::describe() const {
    if (detail.empty())
        return std::string(to_string(result));
    return fmt::format("{}: {}", to_string(result), detail);
}

// One HTTP/2 connection: resolve (names only), connect, the client preface, then one
// stream per probe. Lives while the prober holds it or an operation of its own is pending
// (each handler holds a shared_ptr); every handler first checks closed_.
class GrpcHealthProber::Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(asio::io_context& io, GrpcTarget target, std::string address,
               std::shared_ptr<bool> alive)
        : io_(io), target_(std::move(target)), address_(std::move(address)),
          alive_(std::move(alive)), resolver_(io), socket_(io) {}

    ~Connection() {
        if (session_ != nullptr)
            nghttp2_session_del(session_);
    }

    // New probes may use it: not closed, no GOAWAY, not given up.
    bool usable() const { return !closed_ && !going_away_; }
    bool closed() const { return closed_; }
    std::size_t in_flight() const { return probes_.size(); }

    void start();
    void probe(Callback cb, const std::string& service, Duration timeout);
    // Ends the connection; the calls in flight get `why`.
    void close(const HealthOutcome& why);
    // No new calls; closed once the calls in flight are done.
    void retire() {
        going_away_ = true;
        maybe_close();
    }

private:
    struct Probe {
        Callback cb;
        std::string request;
        std::size_t sent = 0;
        std::string service;
        Duration timeout{};
        asio::steady_timer deadline;
        std::int32_t stream_id = -1; // -1: not submitted (still connecting)
        bool read_since = false;     // a byte arrived from the peer while it was out
        int http_status = 0;
        std::optional<int> grpc_status;
        std::string grpc_message;
        std::string body;
        std::size_t header_bytes = 0;
        std::optional<HealthOutcome> failure; // a limit was hit: the stream is reset
        explicit Probe(asio::io_context& io) : deadline(io) {}
    };

    void connect(std::vector<generic_stream::endpoint> endpoints);
    void on_connected();
    void submit(Probe& p);
    void flush();
    void start_read();
    void on_bytes(std::size_t n);
    void on_deadline(const std::shared_ptr<Probe>& p);
    void finish(Probe& p, HealthOutcome out);
    void erase(const Probe* p);
    void maybe_close();
    HealthOutcome outcome_of(const Probe& p, std::uint32_t error_code) const;

    static Probe* probe_of(nghttp2_session* s, std::int32_t id) {
        return static_cast<Probe*>(nghttp2_session_get_stream_user_data(s, id));
    }
    static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t,
                             std::uint32_t*, nghttp2_data_source*, void*);
    static int on_header(nghttp2_session*, const nghttp2_frame*, const std::uint8_t*, std::size_t,
                         const std::uint8_t*, std::size_t, std::uint8_t, void*);
    static int on_data(nghttp2_session*, std::uint8_t, std::int32_t, const std::uint8_t*,
                       std::size_t, void*);
    static int on_frame(nghttp2_session*, const nghttp2_frame*, void*);
    static int on_stream_close(nghttp2_session*, std::int32_t, std::uint32_t, void*);

    asio::io_context& io_;
    GrpcTarget target_;
    std::string address_;
    std::shared_ptr<bool> alive_;
    tcp::resolver resolver_;
    generic_stream::socket socket_;
    nghttp2_session* session_ = nullptr;
    bool connected_ = false;
    bool closed_ = false;
    bool going_away_ = false;
    bool writing_ = false;
    bool peer_is_h2_ = false;  // the peer's first frame was a SETTINGS frame
    std::string first_bytes_;  // until then
    int silent_deadlines_ = 0; // see kRetireAfterSilentDeadlines
    std::string write_buf_;
    std::array<char, kReadBuffer> read_buf_{};
    std::vector<std::shared_ptr<Probe>> probes_;
};

namespace {

generic_stream::endpoint unix_endpoint(const std::string& path, bool abstract) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::size_t off = abstract ? 1 : 0; // abstract: a leading NUL, no terminator
    const std::size_t n = std::min(path.size(), sizeof addr.sun_path - 1 - off);
    std::memcpy(addr.sun_path + off, path.data(), n);
    const std::size_t len = offsetof(sockaddr_un, sun_path) + off + n + (abstract ? 0 : 1);
    return {&addr, len};
}

HealthOutcome connect_failure(const boost::system::error_code& ec, const std::string& address) {
    auto detail = fmt::format("connect {}: {}", address, ec.message());
    // Nothing listens, or the socket file is not there (yet, or any more).
    if (ec == asio::error::connection_refused ||
        ec == boost::system::errc::no_such_file_or_directory)
        return {HealthResult::connection_refused, std::move(detail)};
    return {HealthResult::unavailable, std::move(detail)};
}

// The first line the peer sent, printable, for "does not speak HTTP/2".
std::string first_line(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 60)) {
        if (c == '\r' || c == '\n')
            break;
        out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    }
    return out;
}

} // namespace

void GrpcHealthProber::Connection::start() {
    auto self = shared_from_this();
    switch (target_.kind) {
    case GrpcTarget::Kind::unix_path:
    case GrpcTarget::Kind::unix_abstract:
        connect({unix_endpoint(target_.path, target_.kind == GrpcTarget::Kind::unix_abstract)});
        return;
    case GrpcTarget::Kind::addresses: {
        std::vector<generic_stream::endpoint> eps;
        for (const auto& ep : target_.endpoints)
            eps.emplace_back(ep.data(), ep.size());
        connect(std::move(eps));
        return;
    }
    case GrpcTarget::Kind::name:
        // asio resolves on a thread of its own and posts the result: the loop never waits.
        resolver_.async_resolve(
            target_.host, std::to_string(target_.port),
            [self](const boost::system::error_code& ec, tcp::resolver::results_type results) {
                if (self->closed_)
                    return;
                if (ec) {
                    self->close(
                        {HealthResult::unavailable,
                         fmt::format("cannot resolve {}: {}", self->target_.host, ec.message())});
                    return;
                }
                std::vector<generic_stream::endpoint> eps;
                for (const auto& r : results)
                    eps.emplace_back(r.endpoint().data(), r.endpoint().size());
                self->connect(std::move(eps));
            });
        return;
    }
}

void GrpcHealthProber::Connection::connect(std::vector<generic_stream::endpoint> endpoints) {
    asio::async_connect(socket_, endpoints,
                        [self = shared_from_this()](const boost::system::error_code& ec,
                                                    const generic_stream::endpoint&) {
                            if (self->closed_)
                                return;
                            if (ec) {
                                self->close(connect_failure(ec, self->address_));
                                return;
                            }
                            self->on_connected();
                        });
}

void GrpcHealthProber::Connection::on_connected() {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Connection::on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Connection::on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Connection::on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Connection::on_stream_close);
    const int rv = nghttp2_session_client_new(&session_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        session_ = nullptr;
        close({HealthResult::error,
               fmt::format("cannot start an HTTP/2 session: {}", nghttp2_strerror(rv))});
        return;
    }
    connected_ = true;
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    const auto waiting = probes_; // submit() may drop one
    for (auto& p : waiting)
        submit(*p);
    flush();
    start_read();
}

void GrpcHealthProber::Connection::probe(Callback cb, const std::string& service,
                                         Duration timeout) {
    auto p = std::make_shared<Probe>(io_);
    p->cb = std::move(cb);
    p->service = service;
    p->timeout = timeout;
    p->request = encode_health_request(service);
    probes_.push_back(p);
    p->deadline.expires_after(timeout);
    p->deadline.async_wait([self = shared_from_this(), p](const boost::system::error_code& ec) {
        if (!ec && p->cb && !self->closed_)
            self->on_deadline(p);
    });
    if (connected_) {
        submit(*p);
        flush();
    }
}

void GrpcHealthProber::Connection::submit(Probe& p) {
    auto nv = [](std::string_view name, std::string_view value) {
        return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())),
                          name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
    };
    const std::string timeout = grpc_timeout_value(p.timeout);
    const nghttp2_nv headers[] = {
        nv(":method", "POST"),
        nv(":scheme", "http"),
        nv(":path", "/grpc.health.v1.Health/Check"),
        nv(":authority", target_.authority),
        nv("content-type", "application/grpc"),
        nv("te", "trailers"),
        nv("grpc-timeout", timeout),
        nv("user-agent", "vigild/" VIGIL_VERSION),
    };
    nghttp2_data_provider body{};
    body.read_callback = &Connection::read_body;
    const std::int32_t id =
        nghttp2_submit_request(session_, nullptr, headers, std::size(headers), &body, &p);
    if (id < 0) {
        // Stream ids run out after 2^30 calls: a new connection for the next probe.
        going_away_ = true;
        finish(p, {HealthResult::error,
                   fmt::format("cannot start an HTTP/2 stream: {}", nghttp2_strerror(id))});
        erase(&p);
        return;
    }
    p.stream_id = id;
    p.read_since = false;
}

ssize_t GrpcHealthProber::Connection::read_body(nghttp2_session* s, std::int32_t id,
                                                std::uint8_t* buf, std::size_t length,
                                                std::uint32_t* flags, nghttp2_data_source*, void*) {
    Probe* p = probe_of(s, id);
    if (p == nullptr)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // its deadline passed: reset it
    const std::size_t n = std::min(length, p->request.size() - p->sent);
    std::memcpy(buf, p->request.data() + p->sent, n);
    p->sent += n;
    if (p->sent == p->request.size())
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
}

int GrpcHealthProber::Connection::on_header(nghttp2_session* s, const nghttp2_frame* frame,
                                            const std::uint8_t* name, std::size_t namelen,
                                            const std::uint8_t* value, std::size_t valuelen,
                                            std::uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    Probe* p = probe_of(s, frame->hd.stream_id);
    if (p == nullptr)
        return 0;
    p->header_bytes += namelen + valuelen;
    if (p->header_bytes > kMaxHeaderBytes) {
        p->failure = HealthOutcome{
            HealthResult::error,
            fmt::format("the answer's headers are larger than {} bytes", kMaxHeaderBytes)};
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // resets the stream
    }
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    auto number = [](std::string_view text) {
        int out = -1;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
        return ec == std::errc() && end == text.data() + text.size() ? out : -1;
    };
    if (n == ":status")
        p->http_status = number(v);
    else if (n == "grpc-status")
        p->grpc_status = number(v);
    else if (n == "grpc-message")
        p->grpc_message = percent_decode(v);
    return 0;
}

int GrpcHealthProber::Connection::on_data(nghttp2_session* s, std::uint8_t, std::int32_t id,
                                          const std::uint8_t* data, std::size_t len, void*) {
    Probe* p = probe_of(s, id);
    if (p == nullptr || p->failure)
        return 0;
    if (p->body.size() + len > kMaxBody) {
        p->failure = HealthOutcome{HealthResult::error,
                                   fmt::format("an answer larger than {} bytes", kMaxBody)};
        // (A data callback's error would not reset the stream: nghttp2 ignores it.)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
    }
    p->body.append(reinterpret_cast<const char*>(data), len);
    return 0;
}

int GrpcHealthProber::Connection::on_frame(nghttp2_session*, const nghttp2_frame* frame,
                                           void* user) {
    if (frame->hd.type == NGHTTP2_GOAWAY)
        static_cast<Connection*>(user)->going_away_ = true; // the calls it took still end
    return 0;
}

int GrpcHealthProber::Connection::on_stream_close(nghttp2_session* s, std::int32_t id,
                                                  std::uint32_t error_code, void* user) {
    Probe* p = probe_of(s, id);
    if (p == nullptr)
        return 0;
    auto* self = static_cast<Connection*>(user);
    self->finish(*p, self->outcome_of(*p, error_code));
    nghttp2_session_set_stream_user_data(s, id, nullptr);
    self->erase(p);
    return 0;
}

HealthOutcome GrpcHealthProber::Connection::outcome_of(const Probe& p,
                                                       std::uint32_t error_code) const {
    if (p.failure)
        return *p.failure;
    if (!p.grpc_status) {
        if (error_code != NGHTTP2_NO_ERROR)
            return {HealthResult::unavailable, fmt::format("the child reset the call (HTTP/2 {})",
                                                           nghttp2_http2_strerror(error_code))};
        if (p.http_status != 200)
            return {HealthResult::error,
                    fmt::format("HTTP status {} without a grpc-status: not a gRPC server?",
                                p.http_status)};
        return {HealthResult::error, "the answer has no grpc-status"};
    }
    switch (*p.grpc_status) {
    case 0: {
        auto status = decode_health_response(p.body);
        if (!status)
            return {HealthResult::error, status.error().message()};
        switch (*status) {
        case 1:
            return {HealthResult::serving, ""};
        case 2:
            return {HealthResult::not_serving, ""};
        case 3:
            return {HealthResult::service_unknown,
                    fmt::format("the child does not know service '{}'", p.service)};
        default:
            return {HealthResult::unknown, ""};
        }
    }
    case 4: // DEADLINE_EXCEEDED: the child's own reading of grpc-timeout
        return {HealthResult::deadline_exceeded,
                fmt::format("no answer within {}", format_duration(p.timeout))};
    case 5: // NOT_FOUND: what gRPC's health service says of a service it does not know
        return {HealthResult::service_unknown,
                fmt::format("the child does not know service '{}'", p.service)};
    case 14: // UNAVAILABLE
        return {HealthResult::unavailable, p.grpc_message};
    default:
        return {HealthResult::error,
                fmt::format("gRPC status {}: {}", *p.grpc_status, p.grpc_message)};
    }
}

void GrpcHealthProber::Connection::flush() {
    if (writing_ || closed_ || session_ == nullptr)
        return;
    write_buf_.clear();
    while (write_buf_.size() < kWriteChunk) {
        const std::uint8_t* data = nullptr;
        const ssize_t n = nghttp2_session_mem_send(session_, &data);
        if (n < 0) {
            close({HealthResult::error, fmt::format("HTTP/2: {}", nghttp2_strerror(int(n)))});
            return;
        }
        if (n == 0)
            break;
        write_buf_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (write_buf_.empty())
        return;
    writing_ = true;
    asio::async_write(
        socket_, asio::buffer(write_buf_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
            self->writing_ = false;
            if (self->closed_)
                return;
            if (ec) {
                self->close({HealthResult::unavailable,
                             fmt::format("send to {}: {}", self->address_, ec.message())});
                return;
            }
            self->flush();
        });
}

void GrpcHealthProber::Connection::start_read() {
    socket_.async_read_some(
        asio::buffer(read_buf_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            if (self->closed_)
                return;
            if (ec) {
                self->close({HealthResult::unavailable,
                             ec == asio::error::eof
                                 ? fmt::format("{} closed the connection", self->address_)
                                 : fmt::format("read from {}: {}", self->address_, ec.message())});
                return;
            }
            self->on_bytes(n);
        });
}

void GrpcHealthProber::Connection::on_bytes(std::size_t n) {
    silent_deadlines_ = 0;
    for (auto& p : probes_)
        p->read_since = true;
    std::string_view data(read_buf_.data(), n);
    if (!peer_is_h2_) {
        // A server's HTTP/2 preface is a SETTINGS frame (type 4) on stream 0; an HTTP/1
        // server answers our preface with "HTTP/1.1 400 ..." instead.
        first_bytes_.append(data);
        if (first_bytes_.size() < 9)
            return start_read();
        const auto* h = reinterpret_cast<const unsigned char*>(first_bytes_.data());
        if (h[3] != NGHTTP2_SETTINGS || (h[5] | h[6] | h[7] | h[8]) != 0) {
            close({HealthResult::error,
                   fmt::format("{} does not speak HTTP/2 (it sent \"{}\"): [health] address "
                               "must be the child's gRPC socket",
                               address_, first_line(first_bytes_))});
            return;
        }
        peer_is_h2_ = true;
        data = first_bytes_;
    }
    const ssize_t rv = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    first_bytes_.clear();
    if (rv < 0) {
        close({HealthResult::error,
               fmt::format("HTTP/2 from {}: {}", address_, nghttp2_strerror(int(rv)))});
        return;
    }
    flush();
    if (closed_)
        return;
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
        !writing_) {
        close(
            {HealthResult::unavailable, fmt::format("{} ended the connection (GOAWAY)", address_)});
        return;
    }
    maybe_close();
    if (!closed_)
        start_read();
}

void GrpcHealthProber::Connection::on_deadline(const std::shared_ptr<Probe>& p) {
    finish(*p, {HealthResult::deadline_exceeded,
                fmt::format("no answer within {}", format_duration(p->timeout))});
    if (!p->read_since && ++silent_deadlines_ >= kRetireAfterSilentDeadlines)
        going_away_ = true;
    if (p->stream_id > 0 && session_ != nullptr) {
        nghttp2_session_set_stream_user_data(session_, p->stream_id, nullptr);
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, p->stream_id, NGHTTP2_CANCEL);
    }
    erase(p.get());
    flush();
    maybe_close();
}

void GrpcHealthProber::Connection::finish(Probe& p, HealthOutcome out) {
    if (!p.cb)
        return;
    p.deadline.cancel();
    // Posted, never called from inside nghttp2 or from probe() itself: the callback may
    // probe or reset again. A post from the loop thread wakes nothing.
    asio::post(io_, [cb = std::move(p.cb), out = std::move(out), alive = alive_] {
        if (*alive)
            cb(out);
    });
    p.cb = nullptr;
}

void GrpcHealthProber::Connection::erase(const Probe* p) {
    std::erase_if(probes_, [p](const std::shared_ptr<Probe>& q) { return q.get() == p; });
}

void GrpcHealthProber::Connection::maybe_close() {
    if (going_away_ && probes_.empty() && !closed_)
        close({HealthResult::unavailable, "connection closed"});
}

void GrpcHealthProber::Connection::close(const HealthOutcome& why) {
    if (closed_)
        return;
    closed_ = true;
    auto probes = std::move(probes_);
    probes_.clear();
    for (auto& p : probes)
        finish(*p, why);
    resolver_.cancel();
    boost::system::error_code ignored;
    socket_.shutdown(generic_stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
    // The session is deleted with the Connection: close() may run inside a handler that
    // got here from nghttp2 (never inside an nghttp2 call itself).
}

GrpcHealthProber::GrpcHealthProber(asio::io_context& io, const HealthConfig& config)
    : io_(io), config_(config) {}

GrpcHealthProber::~GrpcHealthProber() {
    *alive_ = false;
    shutdown();
}

void GrpcHealthProber::configure(const HealthConfig& config) {
    config_ = config;
}

void GrpcHealthProber::reset() {
    // A new child incarnation: never reuse a connection to a process that is gone.
    if (conn_)
        conn_->close({HealthResult::unavailable, "the connection was dropped for a new child"});
    conn_.reset();
}

void GrpcHealthProber::shutdown() {
    const HealthOutcome why{HealthResult::unavailable, "vigild is shutting down"};
    if (conn_)
        conn_->close(why);
    conn_.reset();
    for (auto& w : retired_)
        if (auto c = w.lock())
            c->close(why);
    retired_.clear();
}

void GrpcHealthProber::probe(Callback cb) {
    auto fail_now = [&](HealthOutcome out) {
        asio::post(io_, [cb = std::move(cb), out = std::move(out), alive = alive_] {
            if (*alive)
                cb(out);
        });
    };
    if (!conn_ || !conn_->usable()) {
        auto target = parse_grpc_target(config_.address);
        if (!target) {
            fail_now({HealthResult::error, "bad address: " + target.error().message()});
            return;
        }
        if (conn_ && !conn_->closed()) {
            conn_->retire();
            std::erase_if(retired_, [](const auto& w) { return w.expired(); });
            retired_.push_back(conn_);
        }
        conn_ = std::make_shared<Connection>(io_, std::move(*target), config_.address, alive_);
        conn_->start();
    }
    if (conn_->in_flight() >= kMaxStreams) {
        fail_now({HealthResult::error,
                  fmt::format("{} health checks already in flight on the connection, none "
                              "answered: not starting another",
                              kMaxStreams)});
        return;
    }
    conn_->probe(std::move(cb), config_.service, config_.timeout);
}

} // namespace vigil
