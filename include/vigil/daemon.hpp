// vigild as a whole: the io_context, the signals, the state-dir lock and the supervisor.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/fs_util.hpp"
#include "vigil/reaper.hpp"
#include "vigil/supervisor.hpp"

#include <functional>
#include <variant>

namespace vigil {

// Exit statuses of DESIGN.md (sysexits.h values).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitUnavailable = 69;
inline constexpr int kExitCantCreate = 73;
inline constexpr int kExitTempFail = 75;
inline constexpr int kExitConfig = 78;

class Daemon {
public:
    // Re-reads the configuration the way main() first read it (file + flags + expansion).
    using ConfigLoader = std::function<std::variant<Config, ConfigError>()>;

    Daemon(Config config, ConfigLoader loader);
    ~Daemon();

    // Runs until vigild is told to exit; returns the exit status.
    int run();

private:
    void start_signal_wait();
    void on_signal(int sig);
    void on_reload();
    void begin_shutdown(bool leave_child);
    void finish(int code);

    // Declared first so it is destroyed last, after everything that holds its handlers.
    asio::io_context io_;
    Config config_;
    ConfigLoader loader_;
    asio::signal_set signals_;
    Reaper reaper_;
    Supervisor supervisor_;
    StateDirLock lock_;
    bool shutting_down_ = false;
    int exit_code_ = kExitOk;
};

} // namespace vigil
