#include "vigil/daemon.hpp"

#include "vigil/log.hpp"

#include <csignal>
#include <unistd.h>

namespace vigil {

Daemon::Daemon(Config config, ConfigLoader loader)
    : config_(config), loader_(std::move(loader)), signals_(io_), reaper_(io_),
      supervisor_(io_, reaper_, std::move(config)) {}

Daemon::~Daemon() = default;

int Daemon::run() {
    const auto& state_dir = config_.daemon.state_dir;
    if (auto st = ensure_dir(state_dir, 0700); !st) {
        log::error("failed to create state dir: {} (run as root or pass --state-dir)",
                   st.error().message());
        return kExitCantCreate;
    }
    auto lock = lock_.acquire(state_dir);
    switch (lock.outcome) {
    case StateDirLock::Outcome::acquired:
        break;
    case StateDirLock::Outcome::held_by_other:
        log::error("{}", lock.message);
        return kExitTempFail;
    case StateDirLock::Outcome::failed:
        log::error("{}", lock.message);
        return kExitCantCreate;
    }
    if (auto st = ensure_dir(config_.daemon.root_dir, 0700); !st) {
        log::error("failed to create root dir: {} (run as root or pass --root-dir)",
                   st.error().message());
        return kExitCantCreate;
    }
    // A write to a closed pipe or socket must be an error code, not vigild's death.
    std::signal(SIGPIPE, SIG_IGN);

    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    signals_.add(SIGUSR2);
    start_signal_wait();

    supervisor_.set_fatal_handler([this](int code, const std::string& reason) {
        log::error("the child never came up: {}; vigild exits {}", reason, code);
        exit_code_ = code;
        begin_shutdown(false);
    });
    log::info("vigild {} (pid {}) supervising {} in {}", VIGIL_VERSION, ::getpid(),
              config_.child.binary, state_dir);
    asio::post(io_, [this] { supervisor_.start_initial(); });
    io_.run();
    return exit_code_;
}

void Daemon::start_signal_wait() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec)
            return;
        on_signal(sig);
        if (!shutting_down_)
            start_signal_wait();
    });
}

void Daemon::on_signal(int sig) {
    switch (sig) {
    case SIGTERM:
    case SIGINT:
        log::info("{} received: stopping the child, then exiting",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT");
        begin_shutdown(false);
        return;
    case SIGUSR2:
        log::info("SIGUSR2 received: exiting and leaving the child running");
        begin_shutdown(true);
        return;
    case SIGHUP:
        on_reload();
        return;
    default:
        return;
    }
}

void Daemon::on_reload() {
    log::info("SIGHUP received: reloading {}", config_.source);
    auto loaded = loader_();
    if (auto* err = std::get_if<ConfigError>(&loaded)) {
        log::error("reload failed, keeping the running configuration: {}", err->message);
        return;
    }
    auto& next = std::get<Config>(loaded);
    log::set_level(next.daemon.log_level);
    supervisor_.reload(next);
    config_ = std::move(next);
}

void Daemon::begin_shutdown(bool leave_child) {
    if (shutting_down_)
        return;
    shutting_down_ = true;
    if (leave_child) {
        supervisor_.detach();
        finish(exit_code_);
        return;
    }
    supervisor_.stop([this] { finish(exit_code_); });
}

void Daemon::finish(int code) {
    exit_code_ = code;
    // Every pending operation is cancelled; io_.run() returns once their handlers ran.
    signals_.cancel();
    reaper_.close();
    supervisor_.detach();
    log::info("vigild exits {}", code);
}

} // namespace vigil
