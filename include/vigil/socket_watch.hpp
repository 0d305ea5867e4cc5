// Tells when a file (the child's health socket) appears: inotify on its directory,
// read through the io_context, so the loop sleeps until the kernel says so.
//
// Threading: loop thread only; `on_appear` runs on the loop. Destroying the watch closes
// the inotify descriptor and cancels the read; a queued handler finds the watch gone
// through a weak reference and does nothing.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/result.hpp"

#include <array>
#include <functional>
#include <memory>
#include <string>

namespace vigil {

class SocketWatch {
public:
    // Watches the directory of `path` (absolute) for `path` being created or moved in;
    // `on_appear` runs each time. Fails when the directory cannot be watched (missing, or
    // the inotify limits are reached): the caller then probes blind.
    static Result<std::unique_ptr<SocketWatch>> open(asio::io_context& io, const std::string& path,
                                                     std::function<void()> on_appear);
    ~SocketWatch();
    SocketWatch(const SocketWatch&) = delete;
    SocketWatch& operator=(const SocketWatch&) = delete;

private:
    SocketWatch(asio::io_context& io, int fd, std::string name, std::function<void()> on_appear);
    void arm();
    void on_readable();

    asio::posix::stream_descriptor fd_;
    std::string name_; // the file's name inside the watched directory
    std::function<void()> on_appear_;
    std::shared_ptr<SocketWatch*> self_;
};

// The path of a unix socket in a gRPC target ("unix:///run/x.sock", "unix:/run/x.sock");
// "" for any other target (TCP, abstract sockets, relative paths).
std::string unix_socket_path(const std::string& target);

} // namespace vigil
