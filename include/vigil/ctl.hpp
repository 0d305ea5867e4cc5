// vigilctl: the command line client of vigild's control API. main() in
// src/vigilctl/main.cpp only calls ctl::main(); the parsing (args.cpp), the formatting
// (format.cpp) and the calls (client.cpp) are the vigil_ctl library beside it, so unit
// tests can drive them against an in-process ControlServer.
#pragma once

#include "vigil/config.hpp"
#include "vigil/control_backend.hpp"

#include "vigil/v1/supervisor.pb.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

namespace grpc {
class ClientContext;
} // namespace grpc

namespace vigil::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitApiError = 1;     // vigild answered with an error
inline constexpr int kExitNotRunning = 3;   // status: the child is not running (LSB)
inline constexpr int kExitUsage = 64;       // bad command line
inline constexpr int kExitUnreachable = 69; // vigild did not answer

enum class Command {
    status,
    start,
    stop,
    restart,
    kill,
    oom_score,
    events,
    logs,
    reload,
    shutdown,
    health,
    config,
    metrics,
    incidents,
    help,
    version
};

struct Options {
    std::optional<std::string> socket; // --socket
    bool json = false;
    Command command = Command::help;
    std::optional<Duration> stop_timeout; // stop --timeout
    std::optional<Duration> hold_for;     // stop --for
    std::string reason;                   // stop --reason
    std::string signal;                   // kill SIGNAL
    std::optional<OomScore> oom;          // oom-score N|inherit
    bool follow = false;                  // logs -f
    unsigned lines = 0;                   // logs -n N (0: all kept lines), events -n N
    bool lines_given = false;
    bool leave_running = false; // shutdown --leave-running
    std::string help_topic;     // help COMMAND, COMMAND --help
    bool rejected = false;      // config --rejected
    std::string incident;       // incidents ID
};

struct UsageError {
    std::string message;
};

// `args` without the program name.
std::variant<Options, UsageError> parse_args(const std::vector<std::string>& args);
// vigilctl --help; with a command's name, that command's help.
std::string help_text(std::string_view command = {});

// Human output.
std::string format_uptime(Duration d); // "42ms", "3s", "3min 2s", "2h 5min", "3d 4h"
std::string format_local_time(const std::string& rfc3339, bool with_ms = false);
std::string format_status(const v1::StatusReply& s, SystemTime now);
std::string format_oom(const v1::OomInfo& oom);
std::string format_event(const v1::Event& e);
std::string format_log_line(const v1::LogLine& l);

// The reply in protobuf's JSON mapping on one line: proto field names, every field
// printed even at its default value.
std::string to_json(const google::protobuf::Message& m);

// Lets another thread (vigilctl's signal thread) end a following stream: SIGINT cancels
// the call and vigilctl exits 0.
class Interrupt {
public:
    void attach(grpc::ClientContext* ctx);
    void detach();
    void trigger();
    bool triggered() const { return triggered_.load(); }

private:
    std::mutex mu_;
    grpc::ClientContext* ctx_ = nullptr;
    std::atomic<bool> triggered_{false};
};

// Runs one command against vigild; returns the exit status. `interrupt` may be null.
int run(const Options& opts, std::ostream& out, std::ostream& err, Interrupt* interrupt = nullptr);

// The whole of vigilctl: parse, block SIGINT/SIGTERM into a signal thread, run.
int main(int argc, char** argv);

} // namespace vigil::ctl
