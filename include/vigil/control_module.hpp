// vigild's control API lives in a module, vigil-control.so, that vigild loads with dlopen()
// right after it spawned the child: gRPC and protobuf (70 shared libraries and their static
// initialisers, ~10 ms) are then no part of vigild's own start (docs/architecture.md).
//
// The order in vigild: find() (before the spawn: a missing or untrusted module is an error
// that starts nothing), listen_control_socket() (control_socket.hpp), the spawn, then
// create(): dlopen, the build check, the factory. The module resolves vigil_core's
// symbols (log, config, ...) from the vigild executable, which exports them: one logger,
// one copy of every global. So a module only works with the vigild it was built with:
// kControlModuleBuild says which, and create() refuses any other.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/control_conns.hpp"
#include "vigil/control_socket.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace vigil {

// What vigild asks of the control server (implemented in the module by ControlServer,
// control_server.hpp, which documents the threading: every call on the loop thread).
class ControlService {
public:
    virtual ~ControlService() = default;
    // Serves `socket` (listened on by vigild before the spawn): starts gRPC and accepting.
    virtual Status serve(ListeningSocket socket) = 0;
    // Finishes every open call, removes the socket file, posts `done` to the loop.
    virtual void shutdown(std::function<void()> done) = 0;
    virtual std::size_t stream_count() const = 0;
    virtual ControlConnections::Stats connection_stats() const = 0;
};

// The module's file name, next to vigild (a build tree) or in kControlModuleDir.
inline constexpr const char* kControlModuleName = "vigil-control.so";
// When set, the module's full path: only that file is tried (tests; unusual installs).
inline constexpr const char* kControlModuleEnv = "VIGIL_CONTROL_MODULE";
// Bump when ControlService, the factory's arguments or vigil_core's types the module uses
// change shape; the version and the compiler are part of the check as well.
#define VIGIL_CONTROL_MODULE_ABI 1

#define VIGIL_CONTROL_STR_(x) #x
#define VIGIL_CONTROL_STR(x) VIGIL_CONTROL_STR_(x)
// The string vigild and its module must agree on (both compile it from this header).
#define VIGIL_CONTROL_MODULE_BUILD                                                                 \
    "vigil " VIGIL_VERSION " abi " VIGIL_CONTROL_STR(VIGIL_CONTROL_MODULE_ABI) " " __VERSION__
inline constexpr const char* kControlModuleBuild = VIGIL_CONTROL_MODULE_BUILD;
// The module also carries the string in an ELF section of this name, so that find() checks
// it before the spawn by reading a few headers, without loading the module.
#define VIGIL_CONTROL_BUILD_SECTION ".vigil_control_build"
// The longest build string read from that section.
inline constexpr std::size_t kMaxControlBuildBytes = 512;

// The module's two symbols (extern "C", found by dlsym):
//   const char* vigil_control_build();  // its kControlModuleBuild
//   vigil::ControlService* vigil_control_create(asio::io_context*, vigil::ControlBackend*,
//                                               const vigil::ControlServerOptions*);
// create() never throws across the boundary: nullptr (after logging why) on failure.
inline constexpr const char* kControlBuildSymbol = "vigil_control_build";
inline constexpr const char* kControlCreateSymbol = "vigil_control_create";
using ControlBuildFn = const char* (*)();
using ControlCreateFn = ControlService* (*)(asio::io_context*, ControlBackend*,
                                            const ControlServerOptions*);

class ControlModule {
public:
    // Before the spawn. The path: $VIGIL_CONTROL_MODULE if set; else vigil-control.so next
    // to the running vigild (/proc/self/exe) if a file of that name is there; else
    // kControlModuleDir/vigil-control.so. The file is opened and checked by the trust rule
    // (a regular file owned by root or vigild's euid, not writable by group or others) and
    // kept open, so that create() loads the very file checked here. Its build string (the
    // section VIGIL_CONTROL_BUILD_SECTION) must be vigild's. The error names the path and
    // what to fix.
    static Result<ControlModule> find();

    const std::string& path() const { return path_; }

    // After the spawn, loop thread: dlopen(RTLD_NOW | RTLD_LOCAL), the build check, the
    // factory. The module stays loaded until vigild exits (gRPC's threads and statics
    // outlive any ControlService). The error says what to fix ("reinstall vigil").
    Result<std::unique_ptr<ControlService>> create(asio::io_context& io, ControlBackend& backend,
                                                   const ControlServerOptions& opts);

private:
    ControlModule(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

    std::string path_;
    UniqueFd fd_; // the checked file, until create() loaded it
};

// The trust check of find() on an open file; `path` is for the message.
Status check_module_file(int fd, const std::string& path);
// The contents of the ELF section `name` of the open file `fd` (at most `max_bytes`, up to
// its first NUL), read with pread from the section headers, without loading the file.
Result<std::string> read_elf_section(int fd, const std::string& path, const std::string& name,
                                     std::size_t max_bytes);

} // namespace vigil
