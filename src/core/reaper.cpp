#include "vigil/reaper.hpp"

#include "vigil/log.hpp"
#include "vigil/restart_policy.hpp"

#include <cerrno>
#include <sys/wait.h>

namespace vigil {

Reaper::Reaper(asio::io_context& io) : sigchld_(io, SIGCHLD) {
    start_wait();
}

void Reaper::watch(pid_t pid, ExitHandler handler) {
    handlers_[pid] = std::move(handler);
}

void Reaper::forget(pid_t pid) {
    handlers_.erase(pid);
}

void Reaper::close() {
    closed_ = true;
    boost::system::error_code ignored;
    sigchld_.cancel(ignored);
}

void Reaper::start_wait() {
    sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
        if (ec)
            return; // cancelled: vigild is shutting down
        reap();
        if (!closed_) // a handler run by reap() may have closed the reaper
            start_wait();
    });
}

void Reaper::reap() {
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return; // 0: children remain, none exited; -1/ECHILD: no children at all
        auto it = handlers_.find(pid);
        if (it == handlers_.end()) {
            log::debug("reaped pid {} ({})", pid, describe(ExitStatus::from_wait_status(status)));
            continue;
        }
        auto handler = std::move(it->second);
        handlers_.erase(it);
        handler(status);
    }
}

} // namespace vigil
