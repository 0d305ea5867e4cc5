#include "vigil/cli_parse.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <sstream>

namespace vigil::cli {
namespace {

// Where option descriptions start in help, and how wide the left column may be.
constexpr std::size_t kHelpColumn = 24;

// Optimal string alignment distance (Levenshtein plus transpositions): "stauts" is one
// step from "status". Hand-written: CLI11 has no suggestions, and these ten lines do not
// justify another dependency.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i)
        d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j)
        d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

// Every name an option answers to, with its dashes.
std::vector<std::string> option_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::App* a = &app; a != nullptr; a = a->get_parent()) {
        for (const CLI::Option* o : a->get_options()) {
            for (const auto& l : o->get_lnames())
                names.push_back("--" + l);
            for (const auto& s : o->get_snames())
                names.push_back("-" + s);
        }
        if (!a->get_fallthrough())
            break;
    }
    return names;
}

std::vector<std::string> command_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        names.push_back(sub->get_name());
    return names;
}

std::string first_line_of(const std::string& s) {
    return s.substr(0, s.find('\n'));
}

// The option a CLI11 error names ("--timeout: 1 required TEXT missing"), if any.
std::string option_in(const std::string& message) {
    const auto colon = message.find(':');
    if (colon == std::string::npos || message.empty() || message[0] != '-')
        return {};
    return message.substr(0, colon);
}

// The innermost subcommand given on the line, or `app` itself.
const CLI::App& chosen(const CLI::App& app) {
    const CLI::App* at = &app;
    for (;;) {
        const auto subs = at->get_subcommands();
        if (subs.empty())
            return *at;
        at = subs.front();
    }
}

} // namespace

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
    // Close enough to be a slip of the fingers: two edits, one for short words, none for
    // "-f" (every one-letter option is one edit away).
    const std::size_t allowed = word.size() <= 2 ? 0 : word.size() <= 4 ? 1 : 2;
    std::string best;
    std::size_t best_distance = allowed + 1;
    for (const auto& c : candidates) {
        const std::size_t d = edit_distance(word, c);
        if (d < best_distance) {
            best = c;
            best_distance = d;
        }
    }
    return best.empty() ? std::string() : fmt::format("; did you mean '{}'?", best);
}

std::optional<std::string> parse(CLI::App& app, const std::vector<std::string>& args) {
    std::vector<std::string> reversed(args.rbegin(), args.rend()); // CLI11 takes them so
    try {
        app.parse(reversed);
    } catch (const CLI::ArgumentMismatch& e) {
        const std::string what = e.what();
        if (const auto name = option_in(what);
            !name.empty() && what.find("missing") != std::string::npos)
            return fmt::format("option '{}' needs a value", name);
        return first_line_of(what);
    } catch (const CLI::ParseError& e) {
        return first_line_of(e.what());
    }
    const CLI::App& where = chosen(app);
    const auto extras = app.remaining(true);
    if (extras.empty())
        return std::nullopt;
    const std::string& word = extras.front();
    // An unknown word before the command's name belongs to the program, not the command.
    const auto at = [&](const std::string& w) {
        return std::find(args.begin(), args.end(), w) - args.begin();
    };
    const bool sub = &where != &app && at(word) > at(where.get_name());
    if (word.size() > 1 && word[0] == '-') {
        const std::string name = word.substr(0, word.find('='));
        return fmt::format("unknown option '{}'{}{}", name,
                           sub ? fmt::format(" for '{}'", where.get_name()) : std::string(),
                           suggestion(name, option_names(sub ? where : app)));
    }
    if (!sub && !command_names(app).empty())
        return fmt::format("unknown command '{}'{}", word, suggestion(word, command_names(app)));
    return fmt::format("unexpected argument '{}'", word);
}

std::string wrap(std::string_view text, std::size_t indent, std::size_t width) {
    std::string out;
    std::size_t col = indent; // the caller has filled the first line up to `indent`
    std::istringstream words{std::string(text)};
    std::string w;
    bool first = true;
    while (words >> w) {
        if (!first && col + 1 + w.size() > width) {
            out += '\n';
            out.append(indent, ' ');
            col = indent;
            first = true;
        }
        if (!first) {
            out += ' ';
            ++col;
        }
        out += w;
        col += w.size();
        first = false;
    }
    return out;
}

std::string render_help(const CLI::App& app, std::string_view usage, std::string_view footer,
                        std::string_view preface) {
    std::string out = fmt::format("Usage: {}\n", usage);
    if (!app.get_description().empty())
        out += "\n" + wrap(app.get_description(), 0) + "\n";
    if (!preface.empty())
        out += "\n" + std::string(preface);
    std::string options;
    for (const CLI::Option* o : app.get_options()) {
        if (o->get_lnames().empty() && o->get_snames().empty())
            continue; // positionals are in the usage line
        std::string names;
        for (const auto& s : o->get_snames())
            names += (names.empty() ? "-" : ", -") + s;
        for (const auto& l : o->get_lnames())
            names += (names.empty() ? "--" : ", --") + l;
        if (!o->get_option_text().empty())
            names += " " + o->get_option_text();
        std::string line = "  " + names;
        if (line.size() + 2 > kHelpColumn) {
            line += "\n";
            line.append(kHelpColumn, ' ');
        } else {
            line.append(kHelpColumn - line.size(), ' ');
        }
        options += line + wrap(o->get_description(), kHelpColumn) + "\n";
    }
    if (!options.empty())
        out += "\nOptions:\n" + options;
    if (!footer.empty())
        out += "\n" + std::string(footer);
    if (out.back() != '\n')
        out += '\n';
    return out;
}

} // namespace vigil::cli
