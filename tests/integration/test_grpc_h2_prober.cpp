// Component test: the gRPC health prober (HTTP/2 by hand over libnghttp2, on the loop
// thread) against gRPC's own C++ health service, in process, on a unix socket and on
// 127.0.0.1; and against peers that never answer or speak something else.
#include "harness.hpp"

#include "vigil/health.hpp"

#include <catch2/catch.hpp>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <nghttp2/nghttp2.h>

#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace vt;
using vigil::HealthOutcome;
using vigil::HealthResult;
namespace asio = vigil::asio;

namespace {

// gRPC's standard health service ("" and any service set below), in this process.
class HealthServer {
public:
    explicit HealthServer(const std::string& address) {
        grpc::EnableDefaultHealthCheckService(true);
        grpc::ServerBuilder builder;
        builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
        // A server needs one service of its own beside the health service to start.
        builder.RegisterCallbackGenericService(&generic_);
        server_ = builder.BuildAndStart();
        REQUIRE(server_);
    }
    ~HealthServer() { stop(); }
    void stop() {
        if (server_) {
            server_->Shutdown(std::chrono::system_clock::now() + 2s);
            server_.reset();
        }
    }
    void set(const std::string& service, bool serving) {
        server_->GetHealthCheckService()->SetServingStatus(service, serving);
    }
    int port() const { return port_; }

private:
    int port_ = 0;
    grpc::CallbackGenericService generic_;
    std::unique_ptr<grpc::Server> server_;
};

// A unix socket that accepts connections (the kernel does, from its backlog) and never
// says a word.
struct SilentListener {
    explicit SilentListener(const std::string& path) {
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 128) == 0);
    }
    ~SilentListener() { ::close(fd); }
    int fd = -1;
};

// An HTTP/2 server on the test's own loop (libnghttp2's server side) that answers every
// call in one way that gRPC's own server would not: a huge body, a reset stream, a
// GOAWAY, a trailers-only error.
class H2Peer {
public:
    enum class Answer { huge_body, huge_headers, reset_stream, goaway, internal_error };
    H2Peer(asio::io_context& io, const std::string& path, Answer answer)
        : acceptor_(io, asio::local::stream_protocol::endpoint(path)), socket_(io),
          answer_(answer) {
        acceptor_.async_accept(socket_, [this](const boost::system::error_code& ec) {
            if (!ec)
                start();
        });
    }
    ~H2Peer() {
        if (session_ != nullptr)
            nghttp2_session_del(session_);
    }

private:
    static nghttp2_nv nv(const char* name, const char* value) {
        return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name)),
                reinterpret_cast<std::uint8_t*>(const_cast<char*>(value)), std::strlen(name),
                std::strlen(value), NGHTTP2_NV_FLAG_NONE};
    }
    void start() {
        nghttp2_session_callbacks* cbs = nullptr;
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Peer::on_frame);
        nghttp2_session_server_new(&session_, cbs, this);
        nghttp2_session_callbacks_del(cbs);
        nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
        flush();
        read();
    }
    static int on_frame(nghttp2_session* s, const nghttp2_frame* f, void* user) {
        auto* self = static_cast<H2Peer*>(user);
        if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
            (f->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
            return 0;
        const std::int32_t id = f->hd.stream_id;
        switch (self->answer_) {
        case Answer::huge_body: {
            const nghttp2_nv h[] = {nv(":status", "200"), nv("content-type", "application/grpc")};
            nghttp2_data_provider body{};
            body.read_callback = [](nghttp2_session*, std::int32_t, std::uint8_t* buf,
                                    std::size_t len, std::uint32_t*, nghttp2_data_source*,
                                    void*) -> ssize_t {
                std::memset(buf, 0, len); // an endless body
                return static_cast<ssize_t>(len);
            };
            nghttp2_submit_response(s, id, h, std::size(h), &body);
            break;
        }
        case Answer::huge_headers: {
            static const std::string message(9000, 'x');
            const nghttp2_nv h[] = {nv(":status", "200"), nv("content-type", "application/grpc"),
                                    nv("grpc-status", "13"), nv("grpc-message", message.c_str())};
            nghttp2_submit_response(s, id, h, std::size(h), nullptr);
            break;
        }
        case Answer::reset_stream:
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
            break;
        case Answer::goaway:
            nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
            break;
        case Answer::internal_error: {
            const nghttp2_nv h[] = {nv(":status", "200"), nv("content-type", "application/grpc"),
                                    nv("grpc-status", "13"), nv("grpc-message", "out%20of%20disk")};
            nghttp2_submit_response(s, id, h, std::size(h), nullptr);
            break;
        }
        }
        return 0;
    }
    void read() {
        socket_.async_read_some(
            asio::buffer(buf_), [this](const boost::system::error_code& ec, std::size_t n) {
                if (ec)
                    return;
                nghttp2_session_mem_recv(session_,
                                         reinterpret_cast<const std::uint8_t*>(buf_.data()), n);
                flush();
                read();
            });
    }
    void flush() {
        if (writing_)
            return;
        out_.clear();
        const std::uint8_t* data = nullptr;
        ssize_t n = 0;
        while (out_.size() < 64 * 1024 && (n = nghttp2_session_mem_send(session_, &data)) > 0)
            out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
        if (out_.empty())
            return;
        writing_ = true;
        asio::async_write(socket_, asio::buffer(out_),
                          [this](const boost::system::error_code& ec, std::size_t) {
                              writing_ = false;
                              if (!ec)
                                  flush();
                          });
    }

    asio::local::stream_protocol::acceptor acceptor_;
    asio::local::stream_protocol::socket socket_;
    Answer answer_;
    nghttp2_session* session_ = nullptr;
    std::array<char, 16384> buf_{};
    std::string out_;
    bool writing_ = false;
};

struct Loop {
    asio::io_context io;
    vigil::HealthConfig hc;
    std::optional<vigil::GrpcHealthProber> prober;

    explicit Loop(const std::string& address, Ms timeout = 2s, const std::string& service = "") {
        hc.address = address;
        hc.timeout = timeout;
        hc.service = service;
        prober.emplace(io, hc);
    }
    // Runs the loop (with work kept) until `pred` holds or 20s pass.
    bool run_until(const std::function<bool()>& pred) {
        io.restart(); // a loop that ran out of work stays stopped until restarted
        auto guard = asio::make_work_guard(io);
        const auto end = std::chrono::steady_clock::now() + kDeadline;
        while (!pred() && std::chrono::steady_clock::now() < end)
            io.run_for(10ms);
        return pred();
    }
    HealthOutcome probe() {
        std::optional<HealthOutcome> got;
        prober->probe([&](const HealthOutcome& o) { got = o; });
        REQUIRE(run_until([&] { return got.has_value(); }));
        return *got;
    }
};

} // namespace

TEST_CASE("GrpcHealthProber over HTTP/2 against gRPC's health service", "[component][h2]") {
    TempDir dir;
    SECTION("unix socket") {
        HealthServer server("unix://" + dir / "h.sock");
        server.set("containerd", true);
        server.set("down", false);
        Loop serving("unix://" + dir / "h.sock", 2s, "containerd");
        CHECK(serving.probe().result == HealthResult::serving);
        Loop overall("unix:" + dir / "h.sock");
        CHECK(overall.probe().result == HealthResult::serving);
        Loop down("unix://" + dir / "h.sock", 2s, "down");
        CHECK(down.probe().result == HealthResult::not_serving);
        Loop unknown("unix://" + dir / "h.sock", 2s, "nosuch");
        auto o = unknown.probe();
        CHECK(o.result == HealthResult::service_unknown);
        CHECK(o.describe() == "SERVICE_UNKNOWN: the child does not know service 'nosuch'");
    }
    SECTION("tcp on 127.0.0.1, by address and by name") {
        HealthServer server("127.0.0.1:0");
        REQUIRE(server.port() > 0);
        const auto port = std::to_string(server.port());
        server.set("down", false);
        Loop by_addr("ipv4:127.0.0.1:" + port);
        CHECK(by_addr.probe().result == HealthResult::serving);
        Loop by_name("localhost:" + port, 2s, "down");
        CHECK(by_name.probe().result == HealthResult::not_serving);
        Loop dns("dns:///127.0.0.1:" + port, 2s, "nosuch");
        CHECK(dns.probe().result == HealthResult::service_unknown);
    }
}

TEST_CASE("GrpcHealthProber: nothing listens, a silent peer, a peer that is not HTTP/2",
          "[component][h2]") {
    TempDir dir;
    SECTION("no socket file: connection refused") {
        Loop l("unix://" + dir / "none.sock");
        auto o = l.probe();
        CHECK(o.result == HealthResult::connection_refused);
        CHECK(o.describe().find("No such file or directory") != std::string::npos);
    }
    SECTION("a closed tcp port: connection refused") {
        int port = 0;
        {
            HealthServer s("127.0.0.1:0");
            port = s.port();
        }
        Loop l("ipv4:127.0.0.1:" + std::to_string(port));
        auto o = l.probe();
        CHECK(o.result == HealthResult::connection_refused);
        CHECK(o.describe().find("Connection refused") != std::string::npos);
    }
    SECTION("a listener that never answers: deadline exceeded") {
        SilentListener silent(dir / "s.sock");
        Loop l("unix://" + dir / "s.sock", 300ms);
        const auto t0 = std::chrono::steady_clock::now();
        auto o = l.probe();
        CHECK(o.result == HealthResult::deadline_exceeded);
        CHECK(o.describe() == "deadline exceeded: no answer within 300ms");
        CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
    }
    SECTION("an HTTP/1 server: an error that says so") {
        Loop l("unix://" + dir / "web.sock");
        asio::local::stream_protocol::acceptor acceptor(
            l.io, asio::local::stream_protocol::endpoint(dir / "web.sock"));
        asio::local::stream_protocol::socket peer(l.io);
        const std::string answer = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
        acceptor.async_accept(peer, [&](const boost::system::error_code& ec) {
            if (!ec)
                asio::async_write(peer, asio::buffer(answer),
                                  [](const boost::system::error_code&, std::size_t) {});
        });
        auto o = l.probe();
        INFO(o.describe());
        CHECK(o.result == HealthResult::error);
        CHECK(o.describe().find("does not speak HTTP/2 (it sent \"HTTP/1.1 400 Bad Request\")") !=
              std::string::npos);
    }
}

TEST_CASE("GrpcHealthProber: overlapping calls, reset, shutdown, destruction", "[component][h2]") {
    TempDir dir;
    const std::string addr = "unix://" + dir / "h.sock";
    SECTION("overlapping probes share the connection and each ends exactly once") {
        HealthServer server(addr);
        Loop l(addr);
        std::map<int, int> calls;
        std::vector<HealthResult> results;
        for (int i = 0; i < 20; ++i)
            l.prober->probe([&, i](const HealthOutcome& o) {
                ++calls[i];
                results.push_back(o.result);
            });
        REQUIRE(l.run_until([&] { return results.size() == 20; }));
        // Another turn of the loop: nothing more arrives.
        CHECK(l.probe().result == HealthResult::serving);
        CHECK(results.size() == 20);
        for (int i = 0; i < 20; ++i)
            CHECK(calls[i] == 1);
        CHECK(std::count(results.begin(), results.end(), HealthResult::serving) == 20);
    }
    SECTION("reset() with a call in flight ends it once, as unavailable") {
        SilentListener silent(dir / "h.sock");
        Loop l(addr, 200ms);
        std::vector<HealthOutcome> first;
        l.prober->probe([&](const HealthOutcome& o) { first.push_back(o); });
        l.io.poll(); // connected, request written
        l.prober->reset();
        REQUIRE(l.run_until([&] { return !first.empty(); }));
        CHECK(first[0].result == HealthResult::unavailable);
        // A later call with a longer deadline: the first call's 200ms passes meanwhile.
        l.hc.timeout = 500ms;
        l.prober->configure(l.hc);
        CHECK(l.probe().result == HealthResult::deadline_exceeded);
        CHECK(first.size() == 1);
    }
    SECTION("a server restarted between probes: the next probe reconnects") {
        Loop l(addr);
        {
            HealthServer server(addr);
            CHECK(l.probe().result == HealthResult::serving);
        }
        CHECK_FALSE(l.probe().healthy());
        HealthServer again(addr);
        CHECK(l.probe().result == HealthResult::serving);
    }
    SECTION("shutdown() ends the calls in flight and leaves the loop no work") {
        SilentListener silent(dir / "h.sock");
        Loop l(addr, 30s);
        std::vector<HealthOutcome> got;
        for (int i = 0; i < 3; ++i)
            l.prober->probe([&](const HealthOutcome& o) { got.push_back(o); });
        l.io.poll();
        l.prober->shutdown();
        l.io.restart();
        l.io.run(); // returns: no socket, timer or resolver left
        REQUIRE(got.size() == 3);
        for (const auto& o : got)
            CHECK(o.describe() == "unavailable: vigild is shutting down");
    }
    SECTION("a prober destroyed with calls in flight never calls back") {
        SilentListener silent(dir / "h.sock");
        Loop l(addr, 30s);
        int called = 0;
        l.prober->probe([&](const HealthOutcome&) { ++called; });
        l.io.poll();
        l.prober.reset();
        l.io.restart();
        l.io.run();
        CHECK(called == 0);
    }
    SECTION("a connection silent through 8 deadlines is given up for a new one") {
        Loop l(addr, 50ms);
        asio::local::stream_protocol::acceptor acceptor(
            l.io, asio::local::stream_protocol::endpoint(dir / "h.sock"));
        std::vector<std::unique_ptr<asio::local::stream_protocol::socket>> accepted;
        std::function<void()> accept_next = [&] {
            auto& s =
                accepted.emplace_back(std::make_unique<asio::local::stream_protocol::socket>(l.io));
            acceptor.async_accept(*s, [&](const boost::system::error_code& ec) {
                if (!ec)
                    accept_next();
            });
        };
        accept_next();
        for (int i = 0; i < 8; ++i)
            CHECK(l.probe().result == HealthResult::deadline_exceeded);
        CHECK(accepted.size() == 2); // one connection (and the pending accept)
        CHECK(l.probe().result == HealthResult::deadline_exceeded);
        CHECK(accepted.size() == 3); // the 9th probe connected anew
        acceptor.close();
        l.prober->shutdown();
    }
    SECTION("more calls in flight than the cap: the next fails at once") {
        SilentListener silent(dir / "h.sock");
        Loop l(addr, 30s);
        int ended = 0;
        for (int i = 0; i < 64; ++i)
            l.prober->probe([&](const HealthOutcome&) { ++ended; });
        auto o = l.probe();
        CHECK(o.result == HealthResult::error);
        CHECK(o.describe().find("64 health checks already in flight") != std::string::npos);
        CHECK(ended == 0);
        l.prober->shutdown();
        REQUIRE(l.run_until([&] { return ended == 64; }));
    }
}

TEST_CASE("GrpcHealthProber: what a peer may do wrong over HTTP/2", "[component][h2]") {
    TempDir dir;
    const std::string addr = "unix://" + dir / "h.sock";
    Loop l(addr);
    SECTION("a body past 4 KiB is an error, not read further") {
        H2Peer peer(l.io, dir / "h.sock", H2Peer::Answer::huge_body);
        auto o = l.probe();
        CHECK(o.describe() == "error: an answer larger than 4096 bytes");
    }
    SECTION("headers past 8 KiB are an error") {
        H2Peer peer(l.io, dir / "h.sock", H2Peer::Answer::huge_headers);
        CHECK(l.probe().describe() == "error: the answer's headers are larger than 8192 bytes");
    }
    SECTION("a reset stream is unavailable") {
        H2Peer peer(l.io, dir / "h.sock", H2Peer::Answer::reset_stream);
        auto o = l.probe();
        CHECK(o.result == HealthResult::unavailable);
        CHECK(o.describe().find("reset the call") != std::string::npos);
    }
    SECTION("a GOAWAY before the call is unavailable, and the next probe connects anew") {
        auto peer = std::make_unique<H2Peer>(l.io, dir / "h.sock", H2Peer::Answer::goaway);
        CHECK(l.probe().result == HealthResult::unavailable);
        peer.reset();
        ::unlink((dir / "h.sock").c_str());
        HealthServer server(addr);
        CHECK(l.probe().result == HealthResult::serving);
    }
    SECTION("another gRPC status is an error with its (percent-decoded) message") {
        H2Peer peer(l.io, dir / "h.sock", H2Peer::Answer::internal_error);
        CHECK(l.probe().describe() == "error: gRPC status 13: out of disk");
    }
}
