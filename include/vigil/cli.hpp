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

// The dirs a running vigild uses: a reload cannot move them.
struct DirsInUse {
    std::string state_dir;
    std::string root_dir;
};

// Loads the file (the default path may be missing: defaults alone), applies the flags,
// validates what the flags set, expands ${state_dir}/${root_dir}. With `in_use` (a
// reload), the dirs stay the ones in use and ${state_dir}/${root_dir} expand to them; if
// the file asks for other dirs, `dir_change` (when given) says which, for the operator:
// that change needs a vigild restart.
std::variant<Config, ConfigError> load_effective_config(const Flags& flags,
                                                        const DirsInUse* in_use = nullptr,
                                                        std::string* dir_change = nullptr);

// What load_effective_config() does once the file is read: applies the flags to `config`,
// keeps the dirs in use (`in_use`, see above), expands ${state_dir}/${root_dir} and runs
// check_expanded_config().
std::variant<Config, ConfigError> apply_flags(Config config, const Flags& flags,
                                              const DirsInUse* in_use = nullptr,
                                              std::string* dir_change = nullptr);

} // namespace vigil
