#include "vigil/stop_watch.hpp"

#include <cerrno>
#include <csignal>
#include <sys/wait.h>

namespace vigil {

ChildStopWatch::ChildStopWatch(asio::io_context& io, int pidfd, std::function<void()> on_stop)
    : sigchld_(io, SIGCHLD), pidfd_(pidfd), on_stop_(std::move(on_stop)),
      self_(std::make_shared<ChildStopWatch*>(this)) {
    arm();
}

ChildStopWatch::~ChildStopWatch() {
    self_.reset();
    boost::system::error_code ignored;
    sigchld_.cancel(ignored);
}

void ChildStopWatch::arm() {
    sigchld_.async_wait(
        [weak = std::weak_ptr<ChildStopWatch*>(self_)](const boost::system::error_code& ec, int) {
            auto self = weak.lock();
            if (ec || !self)
                return;
            (*self)->on_sigchld();
        });
}

void ChildStopWatch::on_sigchld() {
    siginfo_t info{};
    int rc;
    do {
        // WSTOPPED alone: reports (and clears) a stop, never reaps an exit.
        rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info,
                      WSTOPPED | WNOHANG);
    } while (rc != 0 && errno == EINTR);
    arm(); // before the callback, which may destroy this watch
    if (rc == 0 && info.si_pid != 0 && info.si_code == CLD_STOPPED) {
        auto cb = on_stop_;
        cb();
    }
}

} // namespace vigil
