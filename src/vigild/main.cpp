// vigild: parse flags, load the config, run the daemon. Everything else is in vigil_core.
#include "vigil/cli.hpp"
#include "vigil/daemon.hpp"
#include "vigil/inherited.hpp"
#include "vigil/log.hpp"

#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <iostream>
#include <thread>

namespace {

// vigild's own threads at exit: the main thread and the logger's.
constexpr std::size_t kOwnThreads = 2;
// How long vigild waits at exit for other threads to end.
constexpr std::chrono::milliseconds kThreadsEndWait{1000};

std::size_t thread_count() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (const dirent* e = ::readdir(d))
            n += e->d_name[0] != '.';
        ::closedir(d);
    }
    return n;
}

// gRPC ends the threads it detached a moment after it has shut down: exit handlers (static
// destructors, and LeakSanitizer's check in the sanitizer build, whose tracer crashed on a
// thread in the middle of ending) must not run beside them. The loop is done by now.
void wait_for_other_threads() {
    const auto end = std::chrono::steady_clock::now() + kThreadsEndWait;
    while (thread_count() > kOwnThreads && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

} // namespace

int main(int argc, char** argv) {
    using namespace vigil;
    reset_inherited_signals();
    auto parsed = parse_flags(argc, argv);
    if (auto* err = std::get_if<FlagsError>(&parsed)) {
        std::cerr << "vigild: " << err->message << "\nTry 'vigild --help'.\n";
        return kExitUsage;
    }
    const Flags flags = std::get<Flags>(parsed);
    if (flags.help) {
        std::cout << vigild_help();
        return kExitOk;
    }
    if (flags.version) {
        std::cout << "vigild " << VIGIL_VERSION << "\n";
        return kExitOk;
    }
    auto loaded = load_effective_config(flags);
    if (auto* err = std::get_if<ConfigError>(&loaded)) {
        std::cerr << "vigild: " << err->message << "\n";
        return kExitConfig;
    }
    Config config = std::move(std::get<Config>(loaded));
    if (flags.check_config) {
        std::cout << to_toml(config);
        return kExitOk;
    }
    log::init(config.daemon.log_level);
    try {
        int rc = 0;
        {
            Daemon daemon(std::move(config), [flags](const DirsInUse& in_use, std::string& change) {
                return load_effective_config(flags, &in_use, &change);
            });
            rc = daemon.run();
        } // the control server and gRPC are shut down here
        wait_for_other_threads();
        return rc;
    } catch (const std::exception& e) {
        log::error("fatal: {}", e.what());
        return 70;
    }
}
