// The control API (proto/vigil/v1/supervisor.proto) served on vigild's unix socket.
//
// Threading: the constructor, start(), shutdown() and the destructor run on the loop
// thread. gRPC handlers run on gRPC threads and never touch supervisor state: a unary
// handler registers its reactor, posts a closure into the io_context and returns; the
// closure calls the ControlBackend and finishes the reactor (at once, or when the
// backend's Reply arrives). Streams keep their own small locked queue, fed on the loop
// thread by backend subscriptions and drained by gRPC's write completions.
//
// Authentication: vigild accepts the connections on the socket itself, reads the peer's
// uid with SO_PEERCRED and hands the connection to one of two in-process gRPC servers: the
// real one (root, vigild's own uid, [daemon] allowed_uids) or a deny-all one that answers
// every method with PERMISSION_DENIED. Connections are bounded (control_conns.hpp,
// conn_limits.hpp): a denied peer's connection is closed right after its answer (or a short
// grace), served connections are capped per uid and in total from RLIMIT_NOFILE, and an
// idle one (no open call) is closed after a while; a peer past a cap gets
// RESOURCE_EXHAUSTED. Strings in requests are bounded before use.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/conn_limits.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/control_conns.hpp"
#include "vigil/control_socket.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace vigil {

namespace detail {
struct ControlCore; // what the gRPC handlers share with the loop (control_server.cpp)
} // namespace detail

class ControlServer {
public:
    // Nothing happens until start(). `backend` must outlive this object.
    ControlServer(asio::io_context& io, ControlBackend& backend, ControlServerOptions opts);
    // Destroy only after shutdown()'s done ran (or when start() failed or was never called).
    // As a last resort a destructor of a serving server finishes every call and shuts gRPC
    // down synchronously, which does not need the loop.
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Loop thread. Checks the path length, removes a stale socket (the caller holds the
    // state-dir lock, so no live vigild owns it), binds, applies mode and group, listens and
    // starts serving (grpc.health.v1 for vigild itself included). A path that exists and is
    // not a socket is an error, never removed.
    Status start();
    // start() in two steps, so vigild can spawn its child between them: listen() does all
    // that can fail for a reason the operator must fix (path, stale socket, bind, mode,
    // group, listen) and is cheap; serve() starts accepting. gRPC (its servers and their
    // threads) is built when the first connection arrives, so a vigild nobody talks to runs
    // no gRPC thread. Connections that come in before serve() wait in the listen backlog.
    Status listen();
    Status serve();
    // listen() done elsewhere (control_socket.hpp: vigild listens before it loads the
    // control module): serve() will serve `socket`, and shutdown() removes its file.
    Status adopt(ListeningSocket socket);

    // Before start(): use these limits instead of ConnectionLimits::from_fd_limit(the soft
    // RLIMIT_NOFILE, the fds open at start()). For tests.
    void set_connection_limits(ConnectionLimits limits) { limits_override_ = limits; }
    // Before start(): stop gRPC's servers after this long without a connection instead of
    // the default minute. For tests.
    void set_idle_teardown(std::chrono::steady_clock::duration d) { idle_teardown_ = d; }
    // Loop thread: whether gRPC's servers are up now (built at a first connection, stopped
    // after the idle teardown). For tests and diagnostics.
    bool grpc_running() const;

    // Loop thread. Stops accepting, finishes every open call (pending commands and streams
    // get UNAVAILABLE "vigild is shutting down"), unsubscribes from the backend, removes the
    // socket file, then shuts gRPC down on a helper thread while the loop keeps turning and
    // posts `done` to the loop once gRPC has let go of every call. Idempotent; `done` may
    // be empty.
    void shutdown(std::function<void()> done);

    // Number of watchers (WatchEvents and following Logs streams) subscribed now. Loop
    // thread; for tests and diagnostics.
    std::size_t stream_count() const;
    // Loop thread, after start(); for tests and diagnostics.
    ControlConnections::Stats connection_stats() const;

private:
    void start_accept();
    void retry_accept_later();
    void on_acceptable();
    // accept(2) failed with EMFILE/ENFILE: accept the pending connection with the spare fd's
    // slot and close it, so the backlog drains and the loop does not spin.
    bool shed_one();
    // Sorts an accepted connection by the peer's uid (SO_PEERCRED) and gives it to gRPC.
    void hand_over(int fd);
    void stop_accepting();
    // The idle teardown: checks after `after` whether a connection is open or came lately.
    void arm_idle_check(std::chrono::steady_clock::duration after);
    void tear_down_grpc();
    void refill_grpc_reserve();

    asio::io_context& io_;
    ControlServerOptions opts_;
    std::shared_ptr<detail::ControlCore> core_;
    asio::local::stream_protocol::acceptor acceptor_;
    asio::steady_timer retry_timer_;
    asio::steady_timer idle_timer_;
    std::chrono::steady_clock::duration idle_teardown_;
    std::chrono::steady_clock::time_point last_connection_{};
    bool tearing_down_ = false;
    std::thread teardown_thread_;
    std::optional<ConnectionLimits> limits_override_;
    std::unique_ptr<ControlConnections> conns_;
    std::vector<UniqueFd> grpc_reserve_; // given up for gRPC's fds when it builds its servers
    UniqueFd spare_fd_;  // /dev/null, given up for a moment to shed a connection at EMFILE
    UniqueFd listen_fd_; // between listen() and serve()
    std::optional<gid_t> socket_gid_;
    // Handlers queued in the loop hold a weak_ptr to this: expired means `this` is gone.
    std::shared_ptr<int> alive_;
    dev_t socket_dev_ = 0;
    ino_t socket_ino_ = 0; // 0: no socket file of ours to remove
    bool grpc_initialised_ =
        false;             // grpc_init() at a first connection; teardown or destructor end it
    bool serving_ = false; // serve() succeeded: accepting (gRPC is built at the first connection)
    bool shutdown_started_ = false;
    bool shutdown_complete_ = false;
    std::vector<std::function<void()>> waiters_; // shutdown()'s done callbacks
    std::thread shutdown_thread_;
};

} // namespace vigil
