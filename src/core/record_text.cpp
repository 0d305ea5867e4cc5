#include "vigil/record_text.hpp"

#include <fmt/format.h>

namespace vigil {

Result<std::map<std::string, std::string>>
parse_record_lines(const std::string& text, std::initializer_list<const char*> keys,
                   std::initializer_list<const char*> may_be_empty) {
    std::map<std::string, std::string> out;
    size_t pos = 0;
    int lineno = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos)
            nl = text.size();
        const std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++lineno;
        if (line.empty())
            continue;
        auto eq = line.find('=');
        if (eq == std::string::npos)
            return make_error(fmt::format("line {}: expected key=value", lineno));
        std::string key = line.substr(0, eq), value = line.substr(eq + 1);
        bool known = false;
        for (const char* k : keys)
            known = known || key == k;
        if (!known)
            return make_error(fmt::format("line {}: unknown key '{}'", lineno,
                                          key.size() > 40 ? key.substr(0, 40) + "..." : key));
        if (out.count(key))
            return make_error(fmt::format("line {}: '{}' given twice", lineno, key));
        bool empty_ok = false;
        for (const char* k : may_be_empty)
            empty_ok = empty_ok || key == k;
        if (value.empty() && !empty_ok)
            return make_error(fmt::format("line {}: empty {}", lineno, key));
        out.emplace(std::move(key), std::move(value));
    }
    std::string missing;
    for (const char* k : keys)
        if (!out.count(k))
            missing += missing.empty() ? k : std::string(", ") + k;
    if (!missing.empty())
        return make_error("incomplete record (missing " + missing + ")");
    return out;
}

} // namespace vigil
