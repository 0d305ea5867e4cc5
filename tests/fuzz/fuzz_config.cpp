// The config loader on arbitrary text, the way vigild reads a file: parse_config() (the
// bounds pre-scan, toml++, every key's checks), then apply_flags() (expansion of
// ${state_dir}/${root_dir} and the checks of the expanded config), then what vigild
// writes from an accepted config: --check-config's TOML and the child's config file.
// Oracles beyond "no crash, no leak, no hang":
// - the pre-scan is sound: text it lets through parses (if at all) into a tree no deeper
//   than kMaxConfigDepth (measured without recursion; a deeper tree aborts before its
//   recursive destructor runs);
// - the child's config file vigild writes is TOML that parses again.
#include "vigil/cli.hpp"
#include "vigil/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "%s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

// Keys and array indices from the root to the deepest value, iteratively.
int depth_of(const toml::table& root) {
    std::vector<std::pair<const toml::node*, int>> todo{{&root, 0}};
    int deepest = 0;
    while (!todo.empty()) {
        auto [node, depth] = todo.back();
        todo.pop_back();
        deepest = std::max(deepest, depth);
        if (const auto* t = node->as_table())
            for (auto&& [k, v] : *t)
                todo.emplace_back(&v, depth + 1);
        else if (const auto* a = node->as_array())
            for (const auto& v : *a)
                todo.emplace_back(&v, depth + 1);
    }
    return deepest;
}

void check_prescan(std::string_view text) {
    if (vigil::check_config_text(text, "fuzz.toml"))
        return;
    toml::table root;
    try {
        root = toml::parse(text, std::string_view("fuzz.toml"));
    } catch (const toml::parse_error&) {
        return;
    }
    if (depth_of(root) > vigil::kMaxConfigDepth)
        fail("the pre-scan let through text nested deeper than kMaxConfigDepth:", text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_prescan(text);
    auto parsed = vigil::parse_config(text, "fuzz.toml");
    auto* config = std::get_if<vigil::Config>(&parsed);
    if (config == nullptr)
        return 0;
    auto effective = vigil::apply_flags(std::move(*config), vigil::Flags{});
    auto* checked = std::get_if<vigil::Config>(&effective);
    if (checked == nullptr)
        return 0;
    (void)vigil::to_toml(*checked);
    const std::string child = vigil::format_toml(checked->child.config);
    try {
        (void)toml::parse(std::string_view(child), std::string_view("child.toml"));
    } catch (const toml::parse_error&) {
        fail("format_toml wrote TOML that does not parse:", child);
    }
    return 0;
}
