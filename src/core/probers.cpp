#include "vigil/probers.hpp"

#include "vigil/reaper.hpp"
#include "vigil/restart_policy.hpp"
#include "vigil/spawn.hpp"
#include "vigil/unique_fd.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <csignal>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char** environ;

namespace vigil {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// An HTTP answer larger than this is not read further: the status line is what counts.
constexpr std::size_t kHttpBodyLimit = 64 * 1024;

// The callback once, whichever of the answer and the deadline comes first.
struct Once {
    HealthProber::Callback cb;
    void operator()(HealthResult r, std::string detail) {
        if (!cb)
            return;
        auto c = std::move(cb);
        cb = nullptr;
        c(HealthOutcome{r, std::move(detail)});
    }
};

HealthOutcome failed_io(const boost::system::error_code& ec, std::string_view what) {
    if (ec == asio::error::connection_refused)
        return {HealthResult::connection_refused, std::string(what) + ": " + ec.message()};
    return {HealthResult::error, std::string(what) + ": " + ec.message()};
}

std::string deadline_text(Duration timeout) {
    return "no answer within " + format_duration(timeout);
}

} // namespace

TcpHealthProber::TcpHealthProber(asio::io_context& io, const HealthConfig& config)
    : io_(io), config_(config) {}

void TcpHealthProber::probe(Callback cb) {
    struct Op {
        tcp::resolver resolver;
        tcp::socket socket;
        asio::steady_timer deadline;
        Once done;
        Op(asio::io_context& io, Callback c)
            : resolver(io), socket(io), deadline(io), done{std::move(c)} {}
    };
    const auto ep = parse_health_endpoint(HealthKind::tcp, config_.address);
    if (!ep) {
        cb(HealthOutcome{HealthResult::error, "bad address " + config_.address});
        return;
    }
    auto op = std::make_shared<Op>(io_, std::move(cb));
    op->deadline.expires_after(config_.timeout);
    op->deadline.async_wait([op, t = config_.timeout](const boost::system::error_code& ec) {
        if (ec)
            return;
        op->done(HealthResult::deadline_exceeded, deadline_text(t));
        op->resolver.cancel();
        boost::system::error_code ignored;
        op->socket.close(ignored);
    });
    // asio resolves names on a thread of its own and posts the result back: the loop
    // never waits for a name service.
    op->resolver.async_resolve(
        ep->host, std::to_string(ep->port),
        [op](const boost::system::error_code& ec, tcp::resolver::results_type results) {
            if (ec) {
                auto o = failed_io(ec, "cannot resolve");
                op->done(o.result == HealthResult::error ? HealthResult::unavailable : o.result,
                         o.detail);
                op->deadline.cancel();
                return;
            }
            asio::async_connect(op->socket, results,
                                [op](const boost::system::error_code& ec, const tcp::endpoint&) {
                                    op->deadline.cancel();
                                    if (ec) {
                                        auto o = failed_io(ec, "connect");
                                        op->done(o.result, o.detail);
                                        return;
                                    }
                                    op->done(HealthResult::serving, "");
                                    boost::system::error_code ignored;
                                    op->socket.close(ignored);
                                });
        });
}

HttpHealthProber::HttpHealthProber(asio::io_context& io, const HealthConfig& config)
    : io_(io), config_(config) {}

void HttpHealthProber::probe(Callback cb) {
    struct Op {
        tcp::resolver resolver;
        beast::tcp_stream stream;
        asio::steady_timer deadline;
        beast::flat_buffer buffer;
        http::request<http::empty_body> request;
        http::response_parser<http::string_body> parser;
        Once done;
        Op(asio::io_context& io, Callback c)
            : resolver(io), stream(io), deadline(io), done{std::move(c)} {}
    };
    const auto ep = parse_health_endpoint(HealthKind::http, config_.address);
    if (!ep) {
        cb(HealthOutcome{HealthResult::error, "bad address " + config_.address});
        return;
    }
    auto op = std::make_shared<Op>(io_, std::move(cb));
    op->request = http::request<http::empty_body>(http::verb::get, ep->path, 11);
    op->request.set(http::field::host, fmt::format("{}:{}", ep->host, ep->port));
    op->request.set(http::field::user_agent, "vigild/" VIGIL_VERSION);
    op->request.set(http::field::connection, "close");
    op->parser.body_limit(kHttpBodyLimit);
    op->deadline.expires_after(config_.timeout);
    op->deadline.async_wait([op, t = config_.timeout](const boost::system::error_code& ec) {
        if (ec)
            return;
        op->done(HealthResult::deadline_exceeded, deadline_text(t));
        op->resolver.cancel();
        op->stream.close();
    });
    op->resolver.async_resolve(
        ep->host, std::to_string(ep->port),
        [op](const boost::system::error_code& ec, tcp::resolver::results_type results) {
            if (ec) {
                op->deadline.cancel();
                op->done(HealthResult::unavailable, "cannot resolve: " + ec.message());
                return;
            }
            op->stream.async_connect(results, [op](const boost::system::error_code& ec,
                                                   const tcp::endpoint&) {
                if (ec) {
                    op->deadline.cancel();
                    auto o = failed_io(ec, "connect");
                    op->done(o.result, o.detail);
                    return;
                }
                http::async_write(op->stream, op->request,
                                  [op](const boost::system::error_code& ec, std::size_t) {
                                      if (ec) {
                                          op->deadline.cancel();
                                          auto o = failed_io(ec, "send");
                                          op->done(o.result, o.detail);
                                          return;
                                      }
                                      http::async_read(
                                          op->stream, op->buffer, op->parser,
                                          [op](const boost::system::error_code& ec, std::size_t) {
                                              op->deadline.cancel();
                                              // A body past the limit still has its status.
                                              if (ec && !op->parser.is_header_done()) {
                                                  auto o = failed_io(ec, "read");
                                                  op->done(o.result, o.detail);
                                                  return;
                                              }
                                              const unsigned code = op->parser.get().result_int();
                                              op->done(code >= 200 && code < 400
                                                           ? HealthResult::serving
                                                           : HealthResult::not_serving,
                                                       fmt::format("HTTP {}", code));
                                              op->stream.close();
                                          });
                                  });
            });
        });
}

ExecHealthProber::ExecHealthProber(asio::io_context& io, Reaper& reaper, const HealthConfig& config)
    : io_(io), reaper_(reaper), config_(config) {}

void ExecHealthProber::probe(Callback cb) {
    struct Op {
        asio::steady_timer deadline;
        UniqueFd pidfd;
        pid_t pid = 0;
        bool reaped = false;
        Once done;
        Op(asio::io_context& io, Callback c) : deadline(io), done{std::move(c)} {}
    };
    auto op = std::make_shared<Op>(io_, std::move(cb));
    SpawnSpec spec;
    spec.binary = config_.command.front();
    spec.argv = config_.command;
    for (char** e = environ; *e != nullptr; ++e)
        if (std::string_view(*e).substr(0, 14) != "NOTIFY_SOCKET=")
            spec.env.emplace_back(*e);
    UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    spec.stdout_fd = null.get();
    spec.stderr_fd = null.get();
    spec.new_session = true; // its own process group: the timeout kills all of it
    auto spawned = spawn_child(spec);
    if (!spawned) {
        op->done(HealthResult::error, spawned.error().message());
        return;
    }
    op->pid = spawned->pid;
    op->pidfd = std::move(spawned->pidfd);
    // The Reaper reaps it (it reaps every child of vigild): no zombie, whatever happens.
    reaper_.watch(op->pid, [op](int status) {
        op->reaped = true;
        op->deadline.cancel();
        const ExitStatus st = ExitStatus::from_wait_status(status);
        op->done(st.success() ? HealthResult::serving : HealthResult::not_serving,
                 "command: " + describe(st));
    });
    op->deadline.expires_after(config_.timeout);
    op->deadline.async_wait([op, t = config_.timeout](const boost::system::error_code& ec) {
        if (ec)
            return;
        if (op->reaped)
            return; // reaped in this same turn: its pid may be another's already
        op->done(HealthResult::deadline_exceeded, "command: " + deadline_text(t) + ", killed");
        ::kill(-op->pid, SIGKILL); // its group (new_session made it the leader)
        ::syscall(SYS_pidfd_send_signal, op->pidfd.get(), SIGKILL, nullptr, 0);
    });
}

std::unique_ptr<HealthProber> make_prober(asio::io_context& io, Reaper& reaper,
                                          const HealthConfig& config) {
    switch (config.kind) {
    case HealthKind::grpc:
        return std::make_unique<GrpcHealthProber>(io, config);
    case HealthKind::http:
        return std::make_unique<HttpHealthProber>(io, config);
    case HealthKind::tcp:
        return std::make_unique<TcpHealthProber>(io, config);
    case HealthKind::exec:
        return std::make_unique<ExecHealthProber>(io, reaper, config);
    case HealthKind::none:
        return nullptr;
    }
    return nullptr;
}

} // namespace vigil
