#include "vigil/socket_watch.hpp"

#include "vigil/log.hpp"

#include <cerrno>
#include <climits>
#include <cstring>
#include <sys/inotify.h>
#include <unistd.h>

namespace vigil {
namespace {

// One read takes every queued event that fits; more stay queued for the next wakeup.
constexpr std::size_t kEventBufferSize = 16 * (sizeof(inotify_event) + NAME_MAX + 1);
// Created (bind() makes a socket's file) or renamed into place.
constexpr std::uint32_t kWatchMask = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR;

} // namespace

std::string unix_socket_path(const std::string& target) {
    std::string path;
    if (target.rfind("unix://", 0) == 0)
        path = target.substr(7);
    else if (target.rfind("unix:", 0) == 0)
        path = target.substr(5);
    else
        return {};
    if (path.empty() || path.front() != '/')
        return {};
    return path;
}

Result<std::unique_ptr<SocketWatch>>
SocketWatch::open(asio::io_context& io, const std::string& path, std::function<void()> on_appear) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos || slash + 1 == path.size())
        return make_error("cannot watch " + path + ": not an absolute file path");
    const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return make_error(errno, "inotify_init1");
    if (::inotify_add_watch(fd, dir.c_str(), kWatchMask) < 0) {
        const int err = errno;
        ::close(fd);
        return make_error(err, "inotify_add_watch " + dir);
    }
    std::unique_ptr<SocketWatch> w(
        new SocketWatch(io, fd, path.substr(slash + 1), std::move(on_appear)));
    w->arm();
    return w;
}

SocketWatch::SocketWatch(asio::io_context& io, int fd, std::string name,
                         std::function<void()> on_appear)
    : fd_(io, fd), name_(std::move(name)), on_appear_(std::move(on_appear)),
      self_(std::make_shared<SocketWatch*>(this)) {}

SocketWatch::~SocketWatch() {
    self_.reset();
    boost::system::error_code ignored;
    fd_.close(ignored);
}

void SocketWatch::arm() {
    fd_.async_wait(
        asio::posix::stream_descriptor::wait_read,
        [weak = std::weak_ptr<SocketWatch*>(self_)](const boost::system::error_code& ec) {
            auto self = weak.lock();
            if (ec || !self)
                return;
            (*self)->on_readable();
        });
}

void SocketWatch::on_readable() {
    alignas(inotify_event) std::array<char, kEventBufferSize> buf;
    bool appeared = false;
    for (;;) {
        const ssize_t n = ::read(fd_.native_handle(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                log::debug("reading inotify events for {}: {}", name_, std::strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buf.data() + off);
            if (ev->len > 0 && name_ == ev->name)
                appeared = true;
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
    }
    // Armed again before the callback, which may destroy this watch (so it runs a copy).
    arm();
    if (appeared) {
        auto cb = on_appear_;
        cb();
    }
}

} // namespace vigil
