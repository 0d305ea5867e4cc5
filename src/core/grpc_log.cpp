// gRPC's log hook (log.hpp's route_grpc_logs): apart from log.cpp, because it is the only
// part of the log that needs gRPC, and vigild's executable does not link gRPC (the control
// module does, control_module.hpp).
#include "vigil/log.hpp"

#include <grpc/support/log.h>

namespace vigil::log {
namespace {

void grpc_log(gpr_log_func_args* args) {
    const LogLevel level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LogLevel::error
                           : args->severity == GPR_LOG_SEVERITY_INFO ? LogLevel::info
                                                                     : LogLevel::debug;
    if (enabled(level))
        write(level, fmt::format("grpc: {} ({}:{})", args->message, args->file, args->line));
}

} // namespace

void route_grpc_logs() {
    gpr_set_log_function(grpc_log);
}

} // namespace vigil::log
