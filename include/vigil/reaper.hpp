// Reaps vigild's children: SIGCHLD through an asio::signal_set, then waitpid(-1, WNOHANG)
// until nothing is left, so no zombie ever stays behind (signals coalesce: one SIGCHLD
// may stand for several exits).
#pragma once

#include "vigil/asio.hpp"

#include <functional>
#include <map>
#include <sys/types.h>

namespace vigil {

class Reaper {
public:
    using ExitHandler = std::function<void(int wait_status)>;

    // Loop thread only. Starts waiting for SIGCHLD at once.
    explicit Reaper(asio::io_context& io);

    // Calls `handler` (on the loop) with the wait status when `pid` is reaped. A pid that
    // is reaped without a handler is logged and forgotten.
    void watch(pid_t pid, ExitHandler handler);
    void forget(pid_t pid);

    // Reaps whatever has exited now (also called on each SIGCHLD).
    void reap();
    // Stops waiting for SIGCHLD (vigild is exiting).
    void close();

private:
    void start_wait();

    asio::signal_set sigchld_;
    std::map<pid_t, ExitHandler> handlers_;
    bool closed_ = false;
};

} // namespace vigil
