// vigild: parse flags, load the config, run the daemon. Everything else is in vigil_core.
#include "vigil/cli.hpp"
#include "vigil/daemon.hpp"
#include "vigil/inherited.hpp"
#include "vigil/log.hpp"

#include <cstdio>
#include <iostream>

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
        Daemon daemon(std::move(config), [flags](const DirsInUse& in_use, std::string& change) {
            return load_effective_config(flags, &in_use, &change);
        });
        return daemon.run();
    } catch (const std::exception& e) {
        log::error("fatal: {}", e.what());
        return 70;
    }
}
