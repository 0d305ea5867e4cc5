#include "vigil/probers.hpp"

#include "vigil/reaper.hpp"
#include "vigil/restart_policy.hpp"
#include "vigil/spawn.hpp"
#include "vigil/unique_fd.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
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

void ProbeOps::add(std::weak_ptr<void> op, std::function<void()> cancel) {
    std::erase_if(ops_, [](const auto& o) { return o.first.expired(); });
    ops_.emplace_back(std::move(op), std::move(cancel));
}

void ProbeOps::cancel_all() {
    auto ops = std::move(ops_);
    ops_.clear();
    for (auto& [weak, cancel] : ops)
        if (!weak.expired())
            cancel();
}

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
    ops_.add(op, [w = std::weak_ptr<Op>(op)] {
        if (auto o = w.lock()) {
            o->deadline.cancel();
            o->resolver.cancel();
            boost::system::error_code ignored;
            o->socket.close(ignored);
        }
    });
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
    ops_.add(op, [w = std::weak_ptr<Op>(op)] {
        if (auto o = w.lock()) {
            o->deadline.cancel();
            o->resolver.cancel();
            o->stream.close();
        }
    });
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
    ops_.add(op, [w = std::weak_ptr<Op>(op)] {
        if (auto o = w.lock()) {
            o->deadline.cancel();
            if (!o->reaped) {
                ::kill(-o->pid, SIGKILL);
                ::syscall(SYS_pidfd_send_signal, o->pidfd.get(), SIGKILL, nullptr, 0);
            }
        }
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

NotifyProber::NotifyProber(asio::io_context& io, const HealthConfig& config, std::string name)
    : io_(io), config_(config), name_(std::move(name)), uid_(::geteuid()) {}

NotifyProber::~NotifyProber() {
    if (socket_) {
        boost::system::error_code ignored;
        socket_->close(ignored);
    }
}

Status NotifyProber::open() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return make_error(errno, "cannot create the notify socket");
    const int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
        return make_error(errno, "SO_PASSCRED on the notify socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (name_.size() + 1 > sizeof addr.sun_path)
        return make_error(ENAMETOOLONG, "notify socket name");
    std::memcpy(addr.sun_path + 1, name_.data(), name_.size()); // abstract: leading NUL
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_.size());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0)
        return make_error(errno, fmt::format("cannot bind the notify socket @{}", name_));
    socket_.emplace(io_, fd.release());
    start_receive();
    return ok_status();
}

void NotifyProber::shutdown() {
    if (socket_) {
        boost::system::error_code ignored;
        socket_->close(ignored);
        socket_.reset();
    }
}

void NotifyProber::new_child(bool adopted, uid_t uid) {
    uid_ = uid;
    ready_ = adopted;
    watchdog_seen_ = false;
    last_ping_.reset();
    status_.clear();
}

void NotifyProber::start_receive() {
    socket_->async_wait(
        asio::posix::descriptor_base::wait_read, [this](const boost::system::error_code& ec) {
            if (ec)
                return; // closed
            // Everything queued, each datagram with its sender's credentials.
            for (int i = 0; i < 64; ++i) {
                char buf[4096];
                alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
                iovec iov{buf, sizeof buf - 1};
                msghdr msg{};
                msg.msg_iov = &iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control;
                msg.msg_controllen = sizeof control;
                const ssize_t n = ::recvmsg(socket_->native_handle(), &msg, MSG_DONTWAIT);
                if (n < 0)
                    break;
                const ucred* cred = nullptr;
                for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c))
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
                        cred = reinterpret_cast<const ucred*>(CMSG_DATA(c));
                if (cred == nullptr || (cred->uid != 0 && cred->uid != uid_))
                    continue; // not the child's user: not heard
                on_message(std::string_view(buf, static_cast<std::size_t>(n)));
            }
            start_receive();
        });
}

void NotifyProber::on_message(std::string_view msg) {
    bool became_ready = false;
    while (!msg.empty()) {
        const auto nl = msg.find('\n');
        const std::string_view line = msg.substr(0, nl);
        msg = nl == std::string_view::npos ? std::string_view() : msg.substr(nl + 1);
        if (line == "READY=1") {
            became_ready = !ready_;
            ready_ = true;
        } else if (line == "WATCHDOG=1") {
            watchdog_seen_ = true;
            last_ping_ = std::chrono::steady_clock::now();
        } else if (line.starts_with("STATUS=")) {
            status_ = std::string(line.substr(7, 512));
        }
    }
    if (became_ready && on_ready_)
        on_ready_();
}

void NotifyProber::probe(Callback cb) {
    if (!ready_) {
        cb(HealthOutcome{HealthResult::not_serving, "no READY=1 yet"});
        return;
    }
    if (config_.watchdog || watchdog_seen_) {
        const Duration every = config_.watchdog.value_or(config_.timeout);
        const auto now = std::chrono::steady_clock::now();
        // With a configured watchdog, the first ping is due `every` after READY=1 at the
        // latest: until one came, the time counts from the first check that saw ready.
        if (!last_ping_)
            last_ping_ = now;
        if (now - *last_ping_ > every) {
            cb(HealthOutcome{HealthResult::deadline_exceeded,
                             fmt::format("no WATCHDOG=1 within {}", format_duration(every))});
            return;
        }
    }
    cb(HealthOutcome{HealthResult::serving, ""});
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
    case HealthKind::notify: // made by the supervisor: it needs the instance's name
    case HealthKind::none:
        return nullptr;
    }
    return nullptr;
}

} // namespace vigil
