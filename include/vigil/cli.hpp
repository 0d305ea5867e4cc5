// vigild's command line: flags that override the config file (DESIGN.md).
#pragma once

#include "vigil/config.hpp"

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace vigil {

inline constexpr const char* kDefaultConfigPath = "/etc/vigil/vigild.toml";

struct Flags {
    std::optional<std::string> config_path;
    std::optional<std::string> state_dir, root_dir, log_level, oom_score_adjust, child_binary,
        control_socket, health_address;
    bool no_health = false;
    bool check_config = false;
    bool version = false;
    bool help = false;
    std::optional<std::vector<std::string>> child_args; // given after "--"
};

struct FlagsError {
    std::string message;
};

// Parses argv. --help text is available through vigild_help().
std::variant<Flags, FlagsError> parse_flags(int argc, const char* const* argv);
std::string vigild_help();

// Loads the file (the default path may be missing: defaults alone), applies the flags,
// validates what the flags set, expands ${state_dir}/${root_dir}.
std::variant<Config, ConfigError> load_effective_config(const Flags& flags);

// What load_effective_config() does once the file is read: applies the flags to `config`,
// expands ${state_dir}/${root_dir} and runs check_expanded_config().
std::variant<Config, ConfigError> apply_flags(Config config, const Flags& flags);

} // namespace vigil
