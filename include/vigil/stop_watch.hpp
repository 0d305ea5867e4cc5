// Tells when a spawned child is stopped by a signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU):
// the kernel sends its parent SIGCHLD with CLD_STOPPED. A stopped child answers nothing, so
// the supervisor probes it at once instead of at the next tick, and the hang is counted
// from the moment it began. (An adopted child is not vigild's: no SIGCHLD comes for it.)
//
// Threading: loop thread only; `on_stop` runs on the loop. A second signal_set on SIGCHLD
// beside the Reaper's: asio tells every set registered for a signal. Only stops are read
// here (waitid WSTOPPED without WEXITED never reaps), so the Reaper sees every exit.
#pragma once

#include "vigil/asio.hpp"

#include <functional>
#include <memory>

namespace vigil {

class ChildStopWatch {
public:
    // `pidfd` is the child's, borrowed: the watch must be destroyed before it is closed.
    ChildStopWatch(asio::io_context& io, int pidfd, std::function<void()> on_stop);
    ~ChildStopWatch();
    ChildStopWatch(const ChildStopWatch&) = delete;
    ChildStopWatch& operator=(const ChildStopWatch&) = delete;

private:
    void arm();
    void on_sigchld();

    asio::signal_set sigchld_;
    int pidfd_;
    std::function<void()> on_stop_;
    std::shared_ptr<ChildStopWatch*> self_;
};

} // namespace vigil
