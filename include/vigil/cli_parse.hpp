// What vigild's and vigilctl's command lines share: CLI11 (Debian's libcli11-dev) parses
// both, and this file gives its results one wording and one help layout, so the two tools
// say the same thing about the same mistake.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
} // namespace CLI

namespace vigil::cli {

// Parses `args` (without the program name) with `app`, which must allow extras: the
// words CLI11 did not take are worded here ("unknown option '--x'; did you mean
// '--y'?", "unknown command 'x'", "unexpected argument 'x'"), as are CLI11's own errors
// ("option '--x' needs a value"). nullopt when the line is good.
std::optional<std::string> parse(CLI::App& app, const std::vector<std::string>& args);

// "; did you mean 'status'?" when one candidate is close to `word` (a small edit
// distance), else "".
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates);

// Help in one layout for both tools: `usage` first, the app's description, `preface` (if
// any), its options (names, value placeholder, description wrapped under 80 columns) and
// `footer`.
std::string render_help(const CLI::App& app, std::string_view usage, std::string_view footer,
                        std::string_view preface = {});

// `text` wrapped at `width` columns, every line after the first indented by `indent`
// spaces (the first is the caller's), no trailing blanks.
std::string wrap(std::string_view text, std::size_t indent, std::size_t width = 80);

} // namespace vigil::cli
