// vigil-control.so's entry points (control_module.hpp): the control server behind the
// narrow ControlService interface vigild loads after the child's spawn.
#include "vigil/control_module.hpp"
#include "vigil/control_server.hpp"
#include "vigil/log.hpp"

#include <exception>

namespace vigil {
namespace {

class ModuleControlService final : public ControlService {
public:
    ModuleControlService(asio::io_context& io, ControlBackend& backend, ControlServerOptions opts)
        : server_(io, backend, std::move(opts)) {}

    Status serve(ListeningSocket socket) override {
        if (auto st = server_.adopt(std::move(socket)); !st)
            return st;
        return server_.serve();
    }
    void shutdown(std::function<void()> done) override { server_.shutdown(std::move(done)); }
    std::size_t stream_count() const override { return server_.stream_count(); }
    ControlConnections::Stats connection_stats() const override {
        return server_.connection_stats();
    }

private:
    ControlServer server_;
};

} // namespace
} // namespace vigil

// The build string where vigild reads it before the spawn (control_module.hpp).
__attribute__((used, section(VIGIL_CONTROL_BUILD_SECTION)))
const char vigil_control_build_section[] = VIGIL_CONTROL_MODULE_BUILD;

extern "C" {

__attribute__((visibility("default"))) const char* vigil_control_build() {
    return vigil::kControlModuleBuild;
}

__attribute__((visibility("default"))) vigil::ControlService*
vigil_control_create(vigil::asio::io_context* io, vigil::ControlBackend* backend,
                     const vigil::ControlServerOptions* opts) {
    try {
        vigil::log::route_grpc_logs();
        return new vigil::ModuleControlService(*io, *backend, *opts);
    } catch (const std::exception& e) {
        vigil::log::error("control module: {}", e.what());
        return nullptr;
    }
}

} // extern "C"
