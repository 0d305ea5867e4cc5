#include "vigil/env_file.hpp"

#include "vigil/fs_util.hpp"

#include <fmt/format.h>

namespace vigil {
namespace {

bool is_name_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}
bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

} // namespace

Result<EnvEntries> parse_env_file(std::string_view text, std::string_view path) {
    EnvEntries out;
    size_t i = 0;
    int line = 1;
    const size_t n = text.size();
    auto fail = [&](int at, const std::string& what) {
        return make_error(fmt::format("{}:{}: {}", path, at, what));
    };
    while (i < n) {
        // Start of a line.
        while (i < n && (is_blank(text[i]) || text[i] == '\r'))
            ++i;
        if (i >= n)
            break;
        if (text[i] == '\n') {
            ++i;
            ++line;
            continue;
        }
        if (text[i] == '#' || text[i] == ';') {
            while (i < n && text[i] != '\n')
                ++i;
            continue;
        }
        const int key_line = line;
        size_t key_start = i;
        while (i < n && is_name_char(text[i]))
            ++i;
        std::string key(text.substr(key_start, i - key_start));
        while (i < n && is_blank(text[i]))
            ++i;
        if (key.empty() || !is_name_start(key[0]) || i >= n || text[i] != '=') {
            size_t end = text.find('\n', key_start);
            std::string bad(text.substr(key_start, std::min<size_t>(end - key_start, 40)));
            return fail(key_line, fmt::format("expected KEY=VALUE with KEY made of letters, "
                                              "digits and '_', got \"{}\"",
                                              bad));
        }
        ++i; // '='
        while (i < n && is_blank(text[i]))
            ++i;
        std::string value;
        size_t keep = 0; // length of value without trailing unquoted whitespace
        bool done = false;
        while (!done && i < n) {
            char c = text[i];
            if (c == '\n') {
                done = true;
                break;
            }
            if (c == '\'') {
                size_t close = text.find('\'', i + 1);
                if (close == std::string_view::npos)
                    return fail(key_line, fmt::format("{}: unterminated single quote", key));
                for (size_t k = i + 1; k < close; ++k)
                    line += text[k] == '\n';
                value.append(text.substr(i + 1, close - i - 1));
                keep = value.size();
                i = close + 1;
            } else if (c == '"') {
                ++i;
                bool closed = false;
                while (i < n) {
                    char d = text[i];
                    if (d == '"') {
                        closed = true;
                        ++i;
                        break;
                    }
                    if (d == '\\' && i + 1 < n) {
                        char e = text[i + 1];
                        if (e == '\n') { // continuation
                            ++line;
                            i += 2;
                            continue;
                        }
                        if (e == '"' || e == '\\' || e == '$' || e == '`') {
                            value += e;
                            i += 2;
                            continue;
                        }
                    }
                    line += d == '\n';
                    value += d;
                    ++i;
                }
                if (!closed)
                    return fail(key_line, fmt::format("{}: unterminated double quote", key));
                keep = value.size();
            } else if (c == '\\') {
                if (i + 1 >= n) {
                    ++i;
                } else if (text[i + 1] == '\n') { // continuation
                    ++line;
                    i += 2;
                } else {
                    value += text[i + 1];
                    keep = value.size();
                    i += 2;
                }
            } else {
                value += c;
                if (!is_blank(c) && c != '\r')
                    keep = value.size();
                ++i;
            }
        }
        value.resize(keep);
        out.emplace_back(std::move(key), std::move(value));
    }
    return out;
}

Result<EnvEntries> read_env_file(const std::string& spec) {
    const bool optional = !spec.empty() && spec[0] == '-';
    const std::string path = optional ? spec.substr(1) : spec;
    auto text = read_file_nofollow(path, kMaxEnvFileBytes);
    if (!text) {
        if (optional && text.error().code == std::errc::no_such_file_or_directory)
            return EnvEntries{};
        return make_error(fmt::format("env file {}: {}", path, text.error().message()));
    }
    return parse_env_file(*text, path);
}

} // namespace vigil
