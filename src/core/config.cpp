#include "vigil/config.hpp"

#include "vigil/exec_env.hpp"
#include "vigil/unique_fd.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace vigil {
namespace {

using namespace std::chrono_literals;

// Longer user strings are cut in messages, so that a message stays a line.
constexpr size_t max_shown_length = 64;
// Longer than any signal name ("SIGRTMIN+15") or number can be.
constexpr size_t max_signal_text = 16;
// What [child.config] may render to (format_toml()): expanded ${state_dir}/${root_dir} and
// the full dotted path of every nested table count.
constexpr size_t max_rendered_child_config = 4 * kMaxConfigSize;
// Highest signal number on Linux (_NSIG - 1).
constexpr int max_signal = 64;
constexpr int max_oom_score = 1000;
constexpr unsigned max_socket_mode = 0777;
// (uid_t)-1 means "no uid" to the kernel, so the largest real uid is one below.
constexpr int64_t max_uid = 0xfffffffe;
// Durations must fit in nanoseconds, so converting one to any std::chrono clock's duration
// (and adding a sane now() to it) cannot overflow.
constexpr int64_t max_duration_ms =
    std::chrono::duration_cast<Duration>(std::chrono::nanoseconds::max()).count();

// Strings in messages and in to_toml() output are written as TOML basic strings.
constexpr auto toml_flags = toml::format_flags::allow_unicode_strings;

struct SignalName {
    int number;
    std::string_view name; // without "SIG"
};

constexpr SignalName signal_names[] = {
    {SIGHUP, "HUP"},       {SIGINT, "INT"},       {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},
    {SIGTRAP, "TRAP"},     {SIGABRT, "ABRT"},     {SIGBUS, "BUS"},   {SIGFPE, "FPE"},
    {SIGKILL, "KILL"},     {SIGUSR1, "USR1"},     {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"},     {SIGALRM, "ALRM"},     {SIGTERM, "TERM"},
#ifdef SIGSTKFLT
    {SIGSTKFLT, "STKFLT"},
#endif
    {SIGCHLD, "CHLD"},     {SIGCONT, "CONT"},     {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"},
    {SIGTTIN, "TTIN"},     {SIGTTOU, "TTOU"},     {SIGURG, "URG"},   {SIGXCPU, "XCPU"},
    {SIGXFSZ, "XFSZ"},     {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"},
    {SIGIO, "IO"},
#ifdef SIGPWR
    {SIGPWR, "PWR"},
#endif
    {SIGSYS, "SYS"},
};

std::string_view file_kind(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return "a directory";
    case S_IFIFO:
        return "a FIFO";
    case S_IFCHR:
        return "a character device";
    case S_IFBLK:
        return "a block device";
    case S_IFSOCK:
        return "a socket";
    default:
        return "not a regular file";
    }
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses the whole of `s` as an integer; nullopt on junk or overflow.
template <typename T> std::optional<T> parse_number(std::string_view s, int base = 10) {
    T v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc{} || end != s.data() + s.size())
        return std::nullopt;
    return v;
}

std::string quote(std::string_view s) {
    toml::value<std::string> v{std::string(s)};
    std::ostringstream os;
    os << toml::toml_formatter{v, toml_flags};
    return os.str();
}

// `s` quoted for a message; a long value is cut and its length given instead.
std::string shown(std::string_view s) {
    if (s.size() <= max_shown_length)
        return quote(s);
    size_t cut = max_shown_length;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut; // not inside a UTF-8 sequence
    return fmt::format("{}... ({} bytes)", quote(s.substr(0, cut)), s.size());
}

// A key as written in a dotted path: bare when possible, otherwise quoted.
std::string key_text(std::string_view k) {
    bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
    return bare ? std::string(k) : quote(k);
}

std::string join_path(std::string_view parent, std::string_view key) {
    return parent.empty() ? key_text(key) : fmt::format("{}.{}", parent, key_text(key));
}

std::string_view type_name(toml::node_type t) {
    switch (t) {
    case toml::node_type::none:
        return "nothing";
    case toml::node_type::table:
        return "table";
    case toml::node_type::array:
        return "array";
    case toml::node_type::string:
        return "string";
    case toml::node_type::integer:
        return "integer";
    case toml::node_type::floating_point:
        return "float";
    case toml::node_type::boolean:
        return "boolean";
    case toml::node_type::date:
        return "date";
    case toml::node_type::time:
        return "time";
    case toml::node_type::date_time:
        return "date-time";
    }
    return "unknown";
}

template <typename T> std::string_view expected_type() {
    if constexpr (std::is_same_v<T, std::string>)
        return "a string";
    else if constexpr (std::is_same_v<T, int64_t>)
        return "an integer";
    else if constexpr (std::is_same_v<T, bool>)
        return "a boolean";
    else if constexpr (std::is_same_v<T, toml::array>)
        return "an array";
    else
        return "a table";
}

std::string join(std::initializer_list<std::string_view> names) {
    std::string out;
    for (auto n : names)
        out += out.empty() ? std::string(n) : fmt::format(", {}", n);
    return out;
}

constexpr std::string_view known_variables = "${state_dir}, ${root_dir}";

// What is wrong with the ${...} placeholders in `s`; "" when every one is known.
std::string check_placeholders(std::string_view s) {
    for (size_t at = s.find("${"); at != std::string_view::npos; at = s.find("${", at)) {
        size_t end = s.find('}', at);
        if (end == std::string_view::npos)
            return fmt::format("unterminated \"${{\"; known variables: {}", known_variables);
        auto var = s.substr(at, end + 1 - at);
        if (var != "${state_dir}" && var != "${root_dir}")
            return fmt::format("unknown variable {}; known: {}",
                               var.size() <= max_shown_length ? var : "${...}", known_variables);
        at = end + 1;
    }
    return {};
}

// Replaces ${state_dir} and ${root_dir}; anything else is left as it is. One pass, so the
// substituted directories are never expanded themselves.
std::string expand(std::string_view s, const DaemonConfig& d) {
    std::string out;
    size_t from = 0;
    for (size_t at = s.find("${"); at != std::string_view::npos; at = s.find("${", from)) {
        size_t end = s.find('}', at);
        if (end == std::string_view::npos)
            break;
        auto var = s.substr(at, end + 1 - at);
        out += s.substr(from, at - from);
        out += var == "${state_dir}"  ? d.state_dir
               : var == "${root_dir}" ? d.root_dir
                                      : std::string(var);
        from = end + 1;
    }
    out += s.substr(from);
    return out;
}

void expand_tree(toml::node& node, const DaemonConfig& d) {
    if (auto* s = node.as_string())
        *s = expand(s->get(), d);
    else if (auto* t = node.as_table())
        for (auto&& [k, v] : *t)
            expand_tree(v, d);
    else if (auto* a = node.as_array())
        for (auto& v : *a)
            expand_tree(v, d);
}

// Where a document first nests deeper than kMaxConfigDepth, has a key longer than
// kMaxKeyLength or a non-ASCII byte outside strings and comments, found with a single pass
// that needs no recursion, before the TOML parser (which recurses on nesting, as does
// everything that walks the parsed tree) sees the text. Depth counts keys and array
// indices from the root: `[a.b]` is a table at depth 2, `c.d = [ { e = 1 } ]` in it puts
// the array at 4, the inline table at 5 and e at 6. Non-ASCII text is valid TOML only in
// strings and comments; elsewhere toml++ 3.3 classifies it with a function that reaches
// __builtin_unreachable() for some code points (U+00A1..U+0499 among them: undefined
// behaviour, found by fuzz_config), so it never gets there.
// Text the scan does not understand is skipped: the parser reports what is wrong with it.
class NestingScan {
public:
    struct Problem {
        toml::source_position at;
        std::string what;
    };

    explicit NestingScan(std::string_view text) : text_(text) {}

    std::optional<Problem> run() {
        int table_depth = 0; // of the last [header]
        if (text_.starts_with("\xEF\xBB\xBF"))
            at_ = 3; // a UTF-8 byte order mark
        while (!done() && !problem_) {
            skip_blanks();
            if (peek() == '#')
                skip_comment();
            if (peek() == '\n' || peek() == '\r') {
                advance();
                continue;
            }
            if (peek() == '[') {
                const auto at = pos();
                advance();
                const bool array_of_tables = peek() == '[';
                if (array_of_tables)
                    advance();
                // [[a.b]] is an array at depth 2 whose tables are at depth 3.
                table_depth = scan_key() + (array_of_tables ? 1 : 0);
                if (problem_)
                    return problem_;
                if (table_depth > kMaxConfigDepth)
                    return too_deep(at);
                skip_line();
                continue;
            }
            const auto at = pos();
            const int keys = scan_key();
            if (problem_)
                return problem_;
            skip_blanks();
            if (keys == 0 || peek() != '=') {
                skip_line();
                continue;
            }
            advance();
            if (table_depth + keys > kMaxConfigDepth)
                return too_deep(at);
            scan_value(table_depth + keys);
            if (problem_)
                return problem_;
        }
        return problem_;
    }

private:
    bool done() const { return at_ >= text_.size(); }
    char peek(size_t ahead = 0) const {
        return at_ + ahead < text_.size() ? text_[at_ + ahead] : '\0';
    }
    toml::source_position pos() const { return {line_, column_}; }
    void advance() {
        if (!in_text_ && static_cast<unsigned char>(text_[at_]) >= 0x80 && !problem_)
            problem_ = Problem{pos(), "a non-ASCII character outside a string or comment "
                                      "(TOML keys and values other than strings are ASCII); "
                                      "quote it"};
        if (text_[at_] == '\n') {
            ++line_;
            column_ = 1;
        } else if ((static_cast<unsigned char>(text_[at_]) & 0xC0) != 0x80) {
            ++column_; // columns count code points, as the parser's do
        }
        ++at_;
    }
    void skip_blanks() {
        while (peek() == ' ' || peek() == '\t')
            advance();
    }
    void skip_scalar() {
        while (!done() && std::string_view(" \t\r\n,]}#[{").find(peek()) == std::string_view::npos)
            advance();
    }
    // To the end of the line: what the parser will refuse anyway, or a comment.
    void skip_line() {
        while (!done() && peek() != '\n' && peek() != '#')
            advance();
        skip_comment();
        if (!done())
            advance();
    }
    // From '#' to the end of the line.
    void skip_comment() {
        in_text_ = true;
        while (!done() && peek() != '\n')
            advance();
        in_text_ = false;
    }
    // Blanks, newlines and comments: what may come between an array's elements.
    void skip_blanks_and_lines() {
        for (;;) {
            skip_blanks();
            if (peek() == '#')
                skip_comment();
            if (peek() != '\n' && peek() != '\r')
                return;
            advance();
        }
    }
    static bool bare_key_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    }

    // A string of any of TOML's four kinds, quote to quote (or to the end of the line for
    // an unterminated single-line string).
    void skip_string() {
        in_text_ = true;
        skip_string_body();
        in_text_ = false;
    }
    void skip_string_body() {
        const char q = peek();
        if (peek(1) == q && peek(2) == q) {
            for (int i = 0; i < 3; ++i)
                advance();
            while (!done() && !(peek() == q && peek(1) == q && peek(2) == q)) {
                if (q == '"' && peek() == '\\' && at_ + 1 < text_.size())
                    advance();
                advance();
            }
            // Up to two more quotes may belong to the string's content.
            while (peek() == q)
                advance();
            return;
        }
        advance();
        while (!done() && peek() != q && peek() != '\n') {
            if (q == '"' && peek() == '\\' && at_ + 1 < text_.size() && peek(1) != '\n')
                advance();
            advance();
        }
        if (peek() == q)
            advance();
    }

    // A dotted key; returns the number of its keys (0: no key here).
    int scan_key() {
        int keys = 0;
        for (;;) {
            skip_blanks();
            const auto at = pos();
            const size_t start = at_;
            size_t quotes = 0;
            if (bare_key_char(peek())) {
                while (bare_key_char(peek()))
                    advance();
            } else if (peek() == '"' || peek() == '\'') {
                skip_string();
                quotes = std::min<size_t>(2, at_ - start);
            } else {
                return keys;
            }
            ++keys;
            // As written (escapes count as written): a bound, not the key's decoded length.
            if (const size_t length = at_ - start - quotes; length > kMaxKeyLength) {
                problem_ = Problem{at, fmt::format("key longer than {} bytes ({} bytes); use "
                                                   "shorter keys",
                                                   kMaxKeyLength, length)};
                return keys;
            }
            skip_blanks();
            if (peek() != '.')
                return keys;
            advance();
        }
    }

    // A value at `depth`, with every array and inline table in it. Iterative: the open
    // containers are on `open` (at most kMaxConfigDepth of them).
    void scan_value(int depth) {
        struct Open {
            char close; // ']' or '}'
            int depth;
        };
        std::vector<Open> open;
        // After '{' or a ',' inside one: the key of the next member, then its value.
        auto member = [&]() -> bool {
            skip_blanks();
            const auto at = pos();
            const int keys = scan_key();
            if (problem_)
                return false;
            skip_blanks();
            if (keys == 0 || peek() != '=')
                return false;
            advance();
            depth = open.back().depth + keys;
            if (depth > kMaxConfigDepth) {
                problem_ = too_deep(at);
                return false;
            }
            return true;
        };
        // After '[' or a ',' inside one: the next element, or the end of the array.
        auto element = [&]() {
            depth = open.back().depth + 1;
            if (depth > kMaxConfigDepth)
                problem_ = too_deep(pos());
        };
        for (;;) {
            // A value at `depth`.
            if (open.empty() || open.back().close == '}')
                skip_blanks();
            else
                skip_blanks_and_lines();
            const char c = peek();
            if (c == '[' || c == '{') {
                advance();
                open.push_back({c == '[' ? ']' : '}', depth});
                if (c == '[') {
                    skip_blanks_and_lines();
                    if (peek() != ']') {
                        element();
                        if (problem_)
                            return;
                        continue;
                    }
                } else {
                    skip_blanks();
                    if (peek() != '}') {
                        if (!member())
                            return;
                        continue;
                    }
                }
                // An empty container: its closing bracket is handled below.
            } else if (c == '"' || c == '\'') {
                skip_string();
            } else {
                // A number, date, boolean or something the parser will refuse.
                const size_t start = at_;
                skip_scalar();
                // A date-time may have a space for its 'T': 1979-05-27 07:32:00Z.
                if (at_ - start == 10 && text_[start + 4] == '-' && text_[start + 7] == '-' &&
                    peek() == ' ' && peek(1) >= '0' && peek(1) <= '9') {
                    advance();
                    skip_scalar();
                }
            }
            // After a value: close containers, or go on to the next element or member.
            for (;;) {
                if (open.empty())
                    return;
                if (open.back().close == ']')
                    skip_blanks_and_lines();
                else
                    skip_blanks();
                if (peek() == open.back().close) {
                    advance();
                    open.pop_back();
                    continue;
                }
                if (peek() != ',')
                    return; // not TOML: the parser says what is wrong
                advance();
                if (open.back().close == ']') {
                    skip_blanks_and_lines();
                    if (peek() == ']')
                        continue; // a trailing comma
                    element();
                    if (problem_)
                        return;
                } else if (!member()) {
                    return;
                }
                break;
            }
        }
    }

    Problem too_deep(toml::source_position at) const {
        return {at, fmt::format("nested deeper than {} levels (tables, arrays, inline tables "
                                "and the keys of a dotted key each count); flatten the "
                                "structure",
                                kMaxConfigDepth)};
    }

    std::string_view text_;
    size_t at_ = 0;
    bool in_text_ = false; // inside a string or a comment: any UTF-8 is fine
    toml::source_index line_ = 1;
    toml::source_index column_ = 1;
    std::optional<Problem> problem_;
};

// Thrown inside the reader only; parse_config() turns it into a ConfigError.
struct Invalid {
    std::string message;
};

enum StringCheck : unsigned { plain = 0, non_empty = 1, vars = 2 };

// One table of the file, with typed readers that leave the default alone when a key is
// absent and throw Invalid ("FILE:LINE:COL: key: what is wrong") when it is wrong.
class Section {
public:
    Section(std::string_view source, const toml::table& table, std::string path)
        : source_(source), table_(table), path_(std::move(path)) {}

    [[noreturn]] void fail(const toml::source_region& at, std::string_view key,
                           std::string_view what) const {
        throw Invalid{
            fmt::format("{}:{}:{}: {}: {}", source_, at.begin.line, at.begin.column, key, what)};
    }
    [[noreturn]] void fail(std::string_view key, std::string_view what) const {
        const auto* n = find(key);
        fail(n != nullptr ? n->source() : toml::source_region{}, path(key), what);
    }

    std::string path(std::string_view key) const { return join_path(path_, key); }
    const toml::node* find(std::string_view key) const { return table_.get(key); }
    const toml::table& table() const { return table_; }

    void allow_only(std::initializer_list<std::string_view> valid) const {
        for (auto&& [k, v] : table_) {
            if (std::find(valid.begin(), valid.end(), k.str()) == valid.end())
                fail(k.source(), path(k.str()),
                     fmt::format("unknown key; valid keys {}: {}",
                                 path_.empty() ? "at the top level" : "in [" + path_ + "]",
                                 join(valid)));
        }
    }

    template <typename T> const auto& typed(const toml::node& n, std::string_view key_path) const {
        const auto* v = n.as<T>();
        if (v == nullptr)
            fail(n.source(), key_path,
                 fmt::format("expected {}, got {}", expected_type<T>(), type_name(n.type())));
        return *v;
    }

    std::optional<Section> sub(std::string_view key) const {
        const auto* n = find(key);
        if (n == nullptr)
            return std::nullopt;
        return Section(source_, typed<toml::table>(*n, path(key)), path(key));
    }

    void read(std::string_view key, std::string& out, unsigned checks = plain,
              size_t max_length = kMaxArgLength) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        check_string(*n, path(key), checks, max_length);
        out = n->as_string()->get();
    }

    void read(std::string_view key, bool& out) const {
        if (const auto* n = find(key))
            out = typed<bool>(*n, path(key)).get();
    }

    void read(std::string_view key, int& out, int64_t min) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        int64_t v = typed<int64_t>(*n, path(key)).get();
        if (v < min)
            fail(key, fmt::format("must be at least {}, got {}", min, v));
        if (v > std::numeric_limits<int>::max())
            fail(key,
                 fmt::format("must be at most {}, got {}", std::numeric_limits<int>::max(), v));
        out = static_cast<int>(v);
    }

    void read(std::string_view key, Duration& out, bool allow_zero = false) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        const std::string& s = typed<std::string>(*n, path(key)).get();
        auto d = parse_duration(s);
        if (!d)
            fail(key, fmt::format("invalid duration {}; expected a systemd time span such as "
                                  "\"500ms\", \"3s\", \"1.5s\", \"1min 30s\" or \"2h\"",
                                  shown(s)));
        if (!allow_zero && d->count() == 0)
            fail(key, "must be greater than 0");
        out = *d;
    }

    // A signal name; "" means none when `out` is optional.
    template <typename T> void read_signal(std::string_view key, T& out) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        const std::string& s = typed<std::string>(*n, path(key)).get();
        if constexpr (std::is_same_v<T, std::optional<int>>) {
            if (s.empty()) {
                out = std::nullopt;
                return;
            }
        }
        auto sig = parse_signal(s);
        if (!sig)
            fail(key, fmt::format("unknown signal {}; expected a name such as \"SIGTERM\" or "
                                  "\"TERM\", or a number 1..{}",
                                  shown(s), max_signal));
        out = *sig;
    }

    void read(std::string_view key, OomScore& out) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        if (const auto* i = n->as_integer()) {
            if (i->get() < -max_oom_score || i->get() > max_oom_score)
                fail(key, fmt::format("out of range -{0}..{0}, got {1}", max_oom_score, i->get()));
            out = OomScore{false, static_cast<int>(i->get())};
        } else if (const auto* s = n->as_string()) {
            if (s->get() != "inherit")
                fail(key, fmt::format("expected an integer -{0}..{0} or \"inherit\", got {1}",
                                      max_oom_score, shown(s->get())));
            out = OomScore{};
        } else {
            fail(key,
                 fmt::format("expected an integer or \"inherit\", got {}", type_name(n->type())));
        }
    }

    template <typename E>
    void read(std::string_view key, E& out,
              std::initializer_list<std::pair<std::string_view, E>> names) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        const std::string& s = typed<std::string>(*n, path(key)).get();
        std::string valid;
        for (const auto& [name, value] : names) {
            if (name == s) {
                out = value;
                return;
            }
            valid += fmt::format("{}{}", valid.empty() ? "" : ", ", quote(name));
        }
        fail(key, fmt::format("invalid value {}; expected one of {}", shown(s), valid));
    }

    void read(std::string_view key, std::vector<std::string>& out, unsigned checks = plain,
              size_t max_length = kMaxArgLength) const {
        const auto* n = find(key);
        if (n == nullptr)
            return;
        const auto& array = typed<toml::array>(*n, path(key));
        out.clear();
        for (size_t i = 0; i < array.size(); ++i) {
            check_string(array[i], fmt::format("{}[{}]", path(key), i), checks, max_length);
            out.push_back(array[i].as_string()->get());
        }
    }

    void check_string(const toml::node& n, std::string_view key_path, unsigned checks,
                      size_t max_length) const {
        const std::string& s = typed<std::string>(n, key_path).get();
        if ((checks & non_empty) && s.empty())
            fail(n.source(), key_path, "must not be empty");
        if (s.size() > max_length)
            fail(n.source(), key_path,
                 fmt::format("{} bytes, longer than the {} allowed", s.size(), max_length));
        if (checks & vars) {
            if (auto what = check_placeholders(s); !what.empty())
                fail(n.source(), key_path, what);
        }
    }

    // Every string inside [child.config], however deep (at most kMaxConfigDepth). The
    // key path of a value is put together only for a message: building it for every
    // value would cost the path's length per value (seconds for a 1 MiB file).
    void check_tree(const toml::node& root, const std::string& key_path) const {
        // Keys (index == npos) and array indices from key_path down to the current node.
        std::vector<std::pair<std::string_view, size_t>> below;
        auto path_of = [&] {
            std::string path = key_path;
            for (const auto& [key, index] : below)
                path = index == std::string_view::npos ? join_path(path, key)
                                                       : fmt::format("{}[{}]", path, index);
            return path;
        };
        auto walk = [&](auto& self, const toml::node& n) -> void {
            if (const auto* s = n.as_string()) {
                if (auto what = check_placeholders(s->get()); !what.empty())
                    fail(n.source(), path_of(), what);
            } else if (const auto* t = n.as_table()) {
                for (auto&& [k, v] : *t) {
                    below.emplace_back(k.str(), std::string_view::npos);
                    self(self, v);
                    below.pop_back();
                }
            } else if (const auto* a = n.as_array()) {
                for (size_t i = 0; i < a->size(); ++i) {
                    below.emplace_back(std::string_view(), i);
                    self(self, (*a)[i]);
                    below.pop_back();
                }
            }
        };
        walk(walk, root);
    }

private:
    std::string_view source_;
    const toml::table& table_;
    std::string path_;
};

void read_daemon(const Section& s, DaemonConfig& d) {
    s.allow_only({"state_dir", "root_dir", "log_level", "control_socket", "control_socket_mode",
                  "control_socket_group", "allowed_uids"});
    s.read("state_dir", d.state_dir, non_empty, kMaxPathLength);
    s.read("root_dir", d.root_dir, non_empty, kMaxPathLength);
    s.read("log_level", d.log_level,
           {{"trace", LogLevel::trace},
            {"debug", LogLevel::debug},
            {"info", LogLevel::info},
            {"warn", LogLevel::warn},
            {"error", LogLevel::error}});
    s.read("control_socket", d.control_socket, non_empty | vars, kMaxPathLength);
    if (const auto* n = s.find("control_socket_mode")) {
        const std::string& text = s.typed<std::string>(*n, s.path("control_socket_mode")).get();
        auto mode = text.find_first_not_of("01234567") == std::string::npos
                        ? parse_number<unsigned>(text, 8)
                        : std::nullopt;
        if (!mode || *mode > max_socket_mode)
            s.fail("control_socket_mode",
                   fmt::format("expected an octal mode 0000..0777 such as \"0660\", got {}",
                               shown(text)));
        d.control_socket_mode = *mode;
    }
    s.read("control_socket_group", d.control_socket_group, plain, kMaxNameLength);
    if (const auto* n = s.find("allowed_uids")) {
        const auto& array = s.typed<toml::array>(*n, s.path("allowed_uids"));
        d.allowed_uids.clear();
        for (size_t i = 0; i < array.size(); ++i) {
            auto key = fmt::format("{}[{}]", s.path("allowed_uids"), i);
            int64_t uid = s.typed<int64_t>(array[i], key).get();
            if (uid < 0 || uid > max_uid)
                s.fail(array[i].source(), key,
                       fmt::format("expected a uid 0..{}, got {}", max_uid, uid));
            d.allowed_uids.push_back(static_cast<uid_t>(uid));
        }
    }
}

// user, group, ..., [child.limits]: the child's execution environment. Users and groups
// must exist when the file is loaded (a typo is a config error, not a failed start).
void read_exec_env(const Section& s, ChildConfig& c) {
    s.read("user", c.user, plain, kMaxNameLength);
    if (!c.user.empty())
        if (auto u = lookup_user(c.user); !u)
            s.fail("user", u.error().message());
    s.read("group", c.group, plain, kMaxNameLength);
    if (!c.group.empty())
        if (auto g = lookup_group(c.group); !g)
            s.fail("group", g.error().message());
    // An element of an array key, located precisely.
    auto fail_at = [&s](std::string_view key, size_t i, std::string_view what) {
        const auto* a = s.find(key)->as_array();
        s.fail(a->get(i)->source(), fmt::format("{}[{}]", s.path(key), i), what);
    };
    s.read("supplementary_groups", c.supplementary_groups, non_empty, kMaxNameLength);
    for (size_t i = 0; i < c.supplementary_groups.size(); ++i)
        if (auto g = lookup_group(c.supplementary_groups[i]); !g)
            fail_at("supplementary_groups", i, g.error().message());
    s.read("working_directory", c.working_directory, non_empty, kMaxPathLength);
    if (c.working_directory.front() != '/')
        s.fail("working_directory",
               fmt::format("must be an absolute path, got {}", quote(c.working_directory)));
    if (const auto* n = s.find("umask")) {
        const std::string& text = s.typed<std::string>(*n, s.path("umask")).get();
        auto mask = !text.empty() && text.find_first_not_of("01234567") == std::string::npos
                        ? parse_number<unsigned>(text, 8)
                        : std::nullopt;
        if (!mask || *mask > 0777)
            s.fail("umask",
                   fmt::format("expected an octal mask 0000..0777 such as \"0022\", got {}",
                               quote(text)));
        c.umask = static_cast<mode_t>(*mask);
    }
    s.read("env_files", c.env_files, non_empty, kMaxPathLength + 1);
    for (size_t i = 0; i < c.env_files.size(); ++i) {
        std::string_view f = c.env_files[i];
        if (f.starts_with("-"))
            f.remove_prefix(1);
        if (!f.starts_with("/"))
            fail_at("env_files", i,
                    fmt::format("must be an absolute path (\"-\" in front: optional), got {}",
                                quote(c.env_files[i])));
    }
    s.read("inherit_env", c.inherit_env);
    s.read("no_new_privileges", c.no_new_privileges);
    if (auto limits = s.sub("limits")) {
        std::string names;
        for (auto n : rlimit_names())
            names += fmt::format("{}{}", names.empty() ? "" : ", ", n);
        c.limits.clear();
        for (auto n : rlimit_names()) {
            const auto* node = limits->find(n);
            if (node == nullptr)
                continue;
            const int resource = *rlimit_resource(n);
            Result<RLimitValue> v =
                make_error("expected an integer, \"infinity\" or \"SOFT:HARD\"");
            if (const auto* i = node->as_integer())
                v = rlimit_from_integer(i->get());
            else if (const auto* str = node->as_string())
                v = parse_rlimit(resource, str->get());
            if (!v)
                limits->fail(n, v.error().message());
            c.limits.push_back(RLimitSetting{resource, *v});
        }
        for (auto&& [k, v] : limits->table())
            if (!rlimit_resource(k.str()))
                limits->fail(k.source(), limits->path(k.str()),
                             fmt::format("unknown limit; expected one of {}", names));
    }
}

void read_child(const Section& s, ChildConfig& c) {
    s.allow_only({"binary",
                  "args",
                  "config_file",
                  "config_flag",
                  "log_level_flag",
                  "oom_score_adj",
                  "stop_signal",
                  "stop_timeout",
                  "new_session",
                  "env",
                  "output",
                  "config",
                  "user",
                  "group",
                  "supplementary_groups",
                  "working_directory",
                  "umask",
                  "env_files",
                  "inherit_env",
                  "no_new_privileges",
                  "limits"});
    s.read("binary", c.binary, non_empty, kMaxPathLength);
    s.read("args", c.args, vars);
    s.read("config_file", c.config_file, plain, kMaxNameLength);
    if (c.config_file.find('/') != std::string::npos || c.config_file == "." ||
        c.config_file == "..")
        s.fail("config_file", "must be a file name inside state_dir (no '/'), or \"\" for none");
    s.read("config_flag", c.config_flag);
    s.read("log_level_flag", c.log_level_flag);
    s.read("oom_score_adj", c.oom_score_adj);
    s.read_signal("stop_signal", c.stop_signal);
    s.read("stop_timeout", c.stop_timeout);
    s.read("new_session", c.new_session);
    if (auto env = s.sub("env")) {
        c.env.clear();
        for (auto&& [k, v] : env->table()) {
            auto key = env->path(k.str());
            if (k.str().empty() || k.str().find('=') != std::string::npos)
                s.fail(k.source(), key,
                       "an environment variable name must not be empty or contain '='");
            const auto& value = env->typed<std::string>(v, key).get();
            // The child gets "NAME=value" as one string.
            if (k.str().size() + 1 + value.size() > kMaxArgLength)
                s.fail(v.source(), key,
                       fmt::format("NAME=value is {} bytes, longer than the {} allowed",
                                   k.str().size() + 1 + value.size(), kMaxArgLength));
            c.env[std::string(k.str())] = value;
        }
    }
    s.read("output", c.output,
           {{"inherit", OutputMode::inherit}, {"capture", OutputMode::capture}});
    read_exec_env(s, c);
    if (const auto* n = s.find("config")) {
        // Replaces the default wholesale: the child's own keys are the child's business.
        const auto& table = s.typed<toml::table>(*n, s.path("config"));
        s.check_tree(table, s.path("config"));
        c.config = table;
    }
}

void read_health(const Section& s, HealthConfig& h) {
    s.allow_only({"kind", "address", "service", "command", "watchdog", "interval", "timeout",
                  "failure_threshold", "startup_timeout", "dump_signal", "dump_wait"});
    s.read("kind", h.kind,
           {{"grpc", HealthKind::grpc},
            {"none", HealthKind::none},
            {"http", HealthKind::http},
            {"tcp", HealthKind::tcp},
            {"exec", HealthKind::exec},
            {"notify", HealthKind::notify}});
    // http and tcp have no address to default to (grpc's is containerd's socket).
    if ((h.kind == HealthKind::http || h.kind == HealthKind::tcp) && s.find("address") == nullptr)
        s.fail("kind", fmt::format("kind \"{}\" needs an address ({})", to_string(h.kind),
                                   h.kind == HealthKind::http ? "\"http://HOST:PORT/PATH\""
                                                              : "\"HOST:PORT\""));
    s.read("command", h.command, vars);
    if (h.kind == HealthKind::exec && h.command.empty())
        s.fail("kind", "kind \"exec\" needs command = [\"PROGRAM\", \"ARG\", ...]");
    if (h.kind != HealthKind::exec && !h.command.empty())
        s.fail("command", "only kind \"exec\" runs a command");
    s.read("address", h.address, h.kind == HealthKind::grpc ? non_empty | vars : vars,
           kMaxPathLength);
    s.read("service", h.service, plain, kMaxNameLength);
    s.read("interval", h.interval);
    s.read("timeout", h.timeout);
    s.read("failure_threshold", h.failure_threshold, 1);
    s.read("startup_timeout", h.startup_timeout);
    s.read_signal("dump_signal", h.dump_signal);
    s.read("dump_wait", h.dump_wait, true);
    if (const auto* n = s.find("watchdog");
        n != nullptr && n->is_string() && !n->as_string()->get().empty()) {
        Duration d{};
        s.read("watchdog", d);
        h.watchdog = d;
        if (h.kind != HealthKind::notify)
            s.fail("watchdog", "only kind \"notify\" has a watchdog");
    } else if (n != nullptr && !n->is_string()) {
        Duration d{};
        s.read("watchdog", d); // fails with the type
    }
}

void read_restart(const Section& s, RestartConfig& r) {
    s.allow_only({"policy", "backoff_initial", "backoff_max", "reset_after", "start_limit_burst",
                  "start_limit_interval", "rollback"});
    s.read("policy", r.policy,
           {{"always", RestartPolicy::always},
            {"on-failure", RestartPolicy::on_failure},
            {"never", RestartPolicy::never}});
    s.read("backoff_initial", r.backoff_initial);
    s.read("backoff_max", r.backoff_max);
    if (r.backoff_max < r.backoff_initial) {
        if (s.find("backoff_max") != nullptr)
            s.fail("backoff_max",
                   fmt::format("must be at least backoff_initial ({}), got {}",
                               format_duration(r.backoff_initial), format_duration(r.backoff_max)));
        s.fail("backoff_initial",
               fmt::format("must be at most backoff_max ({}), got {}",
                           format_duration(r.backoff_max), format_duration(r.backoff_initial)));
    }
    s.read("reset_after", r.reset_after);
    s.read("start_limit_burst", r.start_limit_burst, 1);
    s.read("start_limit_interval", r.start_limit_interval);
    s.read("rollback", r.rollback);
}

void read_metrics(const Section& s, MetricsConfig& m) {
    s.allow_only({"listen"});
    s.read("listen", m.listen, plain, kMaxNameLength);
    if (!m.listen.empty())
        if (auto what = metrics_listen_problem(m.listen))
            s.fail("listen", *what);
}

void read_incidents(const Section& s, IncidentsConfig& i) {
    s.allow_only({"dir", "keep"});
    s.read("dir", i.dir, vars, kMaxPathLength);
    s.read("keep", i.keep, 1);
    if (i.keep > 10000)
        s.fail("keep", fmt::format("must be at most 10000, got {}", i.keep));
}

Config read_config(const toml::table& root, std::string_view source) {
    Config config;
    config.source = std::string(source);
    Section top(source, root, "");
    top.allow_only({"daemon", "child", "health", "restart", "metrics", "incidents"});
    if (auto s = top.sub("daemon"))
        read_daemon(*s, config.daemon);
    if (auto s = top.sub("child"))
        read_child(*s, config.child);
    if (auto s = top.sub("health"))
        read_health(*s, config.health);
    if (auto s = top.sub("restart"))
        read_restart(*s, config.restart);
    if (auto s = top.sub("metrics"))
        read_metrics(*s, config.metrics);
    if (auto s = top.sub("incidents"))
        read_incidents(*s, config.incidents);
    return config;
}

// Bytes `s` takes as a TOML basic string (quotes and escapes included), at most.
size_t quoted_size(std::string_view s) {
    size_t n = 2;
    for (unsigned char c : s)
        n += c < 0x20 || c == 0x7f ? 6 : c == '"' || c == '\\' ? 2 : 1;
    return n;
}

// An upper bound of what format_toml() writes for `node` below a table whose dotted path
// takes `path_size` bytes: every nested table may get a [header] with its full path, and
// every string its escapes. Stops counting once past `limit`. Recursion is bounded by
// kMaxConfigDepth (the tree comes from parse_config()).
size_t rendered_size(const toml::node& node, size_t path_size, size_t limit) {
    constexpr size_t scalar_size = 64; // a number, date or boolean, with its separators
    if (const auto* str = node.as_string())
        return quoted_size(str->get());
    size_t total = 0;
    if (const auto* t = node.as_table()) {
        for (auto&& [k, v] : *t) {
            const size_t key = quoted_size(k.str());
            const size_t child_path = path_size + 1 + key;
            total += key + 4 + (v.is_table() || v.is_array() ? child_path + 6 : 0);
            total += rendered_size(v, child_path, limit);
            if (total > limit)
                return total;
        }
    } else if (const auto* a = node.as_array()) {
        for (const auto& v : *a) {
            total += 2 + (v.is_table() ? path_size + 6 : 0) + rendered_size(v, path_size, limit);
            if (total > limit)
                return total;
        }
    } else {
        total = scalar_size;
    }
    return total;
}

bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

// "PORT" of HOST:PORT: 1..65535.
bool valid_port(std::string_view p) {
    auto n = all_digits(p) && p.size() <= 5 ? parse_number<unsigned>(p) : std::nullopt;
    return n && *n >= 1 && *n <= 65535;
}

// HOST[:PORT] or [IPV6][:PORT], the form dns: and bare targets take. "" when valid.
std::string host_port_problem(std::string_view s, bool port_required) {
    std::string_view host = s, port;
    bool has_port = false;
    if (s.starts_with("[")) {
        const size_t close = s.find(']');
        if (close == std::string_view::npos)
            return "an IPv6 address in [ ] lacks its ']'";
        host = s.substr(1, close - 1);
        auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':')
                return "expected :PORT after ']'";
            port = rest.substr(1);
            has_port = true;
        }
        in6_addr a6{};
        if (::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1)
            return fmt::format("{} is not an IPv6 address", shown(host));
    } else {
        const size_t colon = s.rfind(':');
        if (colon != std::string_view::npos) {
            host = s.substr(0, colon);
            port = s.substr(colon + 1);
            has_port = true;
        }
        if (host.empty() || host.size() > 253 || !std::all_of(host.begin(), host.end(), host_char))
            return fmt::format("{} is not a host name or address", shown(host));
    }
    if (has_port && !valid_port(port))
        return fmt::format("{} is not a port 1..65535", shown(port));
    if (port_required && !has_port)
        return "a port is needed (HOST:PORT)";
    return {};
}

// ipv4:/ipv6: lists: ADDR[:PORT] items separated by commas.
std::string address_list_problem(std::string_view list, int family) {
    if (list.empty())
        return "no address given";
    for (;;) {
        const size_t comma = list.find(',');
        const auto item = list.substr(0, comma);
        std::string_view addr = item, port;
        if (family == AF_INET) {
            if (const size_t colon = item.find(':'); colon != std::string_view::npos) {
                addr = item.substr(0, colon);
                port = item.substr(colon + 1);
                if (!valid_port(port))
                    return fmt::format("{} is not a port 1..65535", shown(port));
            }
        } else if (item.starts_with("[")) {
            const size_t close = item.find(']');
            if (close == std::string_view::npos)
                return "an IPv6 address in [ ] lacks its ']'";
            addr = item.substr(1, close - 1);
            const auto rest = item.substr(close + 1);
            if (!rest.empty() && (rest[0] != ':' || !valid_port(rest.substr(1))))
                return fmt::format("expected :PORT after ']' in {}", shown(item));
        }
        in6_addr buf{};
        if (::inet_pton(family, std::string(addr).c_str(), &buf) != 1)
            return fmt::format("{} is not an {} address", shown(addr),
                               family == AF_INET ? "IPv4" : "IPv6");
        if (comma == std::string_view::npos)
            return {};
        list.remove_prefix(comma + 1);
    }
}

// [child.NAME] as TOML, with nested tables under their full dotted names.
std::string child_table_toml(std::string_view name, toml::table table) {
    table.is_inline(false);
    toml::table child;
    child.insert(name, std::move(table));
    toml::table root;
    root.insert("child", std::move(child));
    std::ostringstream os;
    os << toml::toml_formatter{root, toml_flags};
    return os.str() + "\n";
}

} // namespace

std::string format_toml(const toml::table& table) {
    std::ostringstream os;
    os << toml::toml_formatter{table, toml_flags};
    return os.str() + "\n";
}

std::optional<HealthEndpoint> parse_health_endpoint(HealthKind kind, std::string_view address) {
    HealthEndpoint e;
    std::string_view rest = address;
    if (kind == HealthKind::http) {
        if (!rest.starts_with("http://"))
            return std::nullopt;
        rest.remove_prefix(7);
        const auto slash = rest.find('/');
        e.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
        rest = rest.substr(0, slash);
    }
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        return std::nullopt;
    e.host = std::string(rest.substr(0, colon));
    if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']')
        e.host = e.host.substr(1, e.host.size() - 2);
    const std::string_view port = rest.substr(colon + 1);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 ||
        p > 65535)
        return std::nullopt;
    e.port = p;
    if (e.host.empty() || e.host.find_first_of(" /@?#") != std::string::npos ||
        e.path.find_first_of(" \r\n") != std::string::npos)
        return std::nullopt;
    return e;
}

std::optional<std::string> endpoint_problem(HealthKind kind, std::string_view address) {
    if (parse_health_endpoint(kind, address))
        return std::nullopt;
    return fmt::format("{} is not {}", shown(address),
                       kind == HealthKind::http
                           ? "http://HOST:PORT/PATH (such as \"http://127.0.0.1:8080/healthz\")"
                           : "HOST:PORT (such as \"127.0.0.1:6379\")");
}

std::optional<std::string> metrics_listen_problem(std::string_view listen) {
    const auto colon = listen.rfind(':');
    if (colon == std::string_view::npos)
        return fmt::format("{} is not IP:PORT (such as \"127.0.0.1:9464\" or \"[::1]:9464\")",
                           shown(listen));
    std::string host(listen.substr(0, colon));
    const std::string_view port = listen.substr(colon + 1);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 ||
        p > 65535)
        return fmt::format("{}: the port must be a number 1..65535", shown(listen));
    unsigned char buf[sizeof(in6_addr)];
    const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (v6 ? ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) != 1
           : ::inet_pton(AF_INET, host.c_str(), buf) != 1)
        return fmt::format("{}: the host must be an IPv4 address or an IPv6 address in "
                           "brackets (no names: nothing is looked up), such as 127.0.0.1 or "
                           "[::1]",
                           shown(listen));
    return std::nullopt;
}

Config::Config() {
    child.config.insert("version", 2);
    child.config.insert("root", "${root_dir}/containerd");
    child.config.insert("state", "${state_dir}/containerd");
    toml::table grpc;
    grpc.insert("address", "${state_dir}/containerd.sock");
    child.config.insert("grpc", std::move(grpc));
}

std::optional<Duration> parse_duration(std::string_view s) {
    // systemd's time spans (systemd.time(7)): numbers with units, optionally with a
    // fraction and spaces, summed ("1min 30s", "1.5s", "2h30m", "1d"); a bare number is
    // seconds. The smallest unit kept is a millisecond: "1.5ms" is refused.
    struct Unit {
        std::string_view name;
        int64_t ms;
    };
    constexpr Unit units[] = {
        {"msec", 1},           {"ms", 1},
        {"seconds", 1'000},    {"second", 1'000},
        {"sec", 1'000},        {"s", 1'000},
        {"minutes", 60'000},   {"minute", 60'000},
        {"min", 60'000},       {"m", 60'000},
        {"hours", 3'600'000},  {"hour", 3'600'000},
        {"hr", 3'600'000},     {"h", 3'600'000},
        {"days", 86'400'000},  {"day", 86'400'000},
        {"d", 86'400'000},     {"weeks", 604'800'000},
        {"week", 604'800'000}, {"w", 604'800'000},
    };
    auto blank = [](char c) { return c == ' ' || c == '\t'; };
    if (s.size() > 256)
        return std::nullopt;
    while (!s.empty() && blank(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && blank(s.back()))
        s.remove_suffix(1);
    if (s.empty())
        return std::nullopt;
    int64_t total = 0;
    while (!s.empty()) {
        size_t digits = 0;
        while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9')
            ++digits;
        if (digits == 0 || digits > 19)
            return std::nullopt;
        auto whole = parse_number<int64_t>(s.substr(0, digits));
        if (!whole)
            return std::nullopt;
        s.remove_prefix(digits);
        std::string_view frac;
        if (!s.empty() && s.front() == '.') {
            size_t f = 1;
            while (f < s.size() && s[f] >= '0' && s[f] <= '9')
                ++f;
            if (f == 1 || f > 10)
                return std::nullopt;
            frac = s.substr(1, f - 1);
            s.remove_prefix(f);
        }
        while (!s.empty() && blank(s.front()))
            s.remove_prefix(1);
        int64_t unit = 1'000; // a bare number is seconds
        for (const auto& u : units) {
            if (s.starts_with(u.name) &&
                (s.size() == u.name.size() ||
                 !std::isalpha(static_cast<unsigned char>(s[u.name.size()])))) {
                unit = u.ms;
                s.remove_prefix(u.name.size());
                break;
            }
        }
        if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.front())))
            return std::nullopt; // an unknown unit
        if (*whole > (max_duration_ms - total) / unit)
            return std::nullopt;
        total += *whole * unit;
        // The fraction: exact in milliseconds, or refused.
        int64_t num = 0, den = 1;
        for (char c : frac) {
            num = num * 10 + (c - '0');
            den *= 10;
        }
        if (num != 0) {
            if ((num * unit) % den != 0)
                return std::nullopt;
            const int64_t part = num * unit / den;
            if (part > max_duration_ms - total)
                return std::nullopt;
            total += part;
        }
        while (!s.empty() && blank(s.front()))
            s.remove_prefix(1);
    }
    return Duration(total);
}

std::string format_duration(Duration d) {
    // As systemd prints a time span: "1min 30s", "1s 500ms", "2h", "0".
    int64_t ms = d.count();
    if (ms == 0)
        return "0";
    struct Part {
        const char* name;
        int64_t ms;
    };
    constexpr Part parts[] = {
        {"d", 86'400'000}, {"h", 3'600'000}, {"min", 60'000}, {"s", 1'000}, {"ms", 1}};
    std::string out;
    for (const auto& p : parts) {
        if (ms >= p.ms) {
            out += fmt::format("{}{}{}", out.empty() ? "" : " ", ms / p.ms, p.name);
            ms %= p.ms;
        }
    }
    return out;
}

std::optional<int> parse_signal(std::string_view s) {
    if (s.size() > max_signal_text)
        return std::nullopt;
    // "SIG<n>" is accepted too: it is what signal_name() writes for real-time signals.
    if (s.starts_with("SIG"))
        s.remove_prefix(3);
    std::optional<int> sig;
    if (all_digits(s)) {
        sig = parse_number<int>(s);
    } else if (s.starts_with("RTMIN") || s.starts_with("RTMAX")) {
        // SIGRTMIN+N / SIGRTMAX-N, counted from the C library's real-time range.
        bool min = s.starts_with("RTMIN");
        auto offset = s.substr(5);
        sig = min ? SIGRTMIN : SIGRTMAX;
        if (!offset.empty()) {
            auto n =
                all_digits(offset.substr(1)) ? parse_number<int>(offset.substr(1)) : std::nullopt;
            if (!n || offset[0] != (min ? '+' : '-') || *n > SIGRTMAX - SIGRTMIN)
                return std::nullopt;
            sig = min ? *sig + *n : *sig - *n;
        }
    } else {
        for (const auto& entry : signal_names)
            if (entry.name == s)
                sig = entry.number;
    }
    if (!sig || *sig < 1 || *sig > max_signal)
        return std::nullopt;
    return sig;
}

std::string signal_name(int sig) {
    for (const auto& entry : signal_names)
        if (entry.number == sig)
            return fmt::format("SIG{}", entry.name);
    return fmt::format("SIG{}", sig);
}

std::optional<OomScore> parse_oom_score(std::string_view s) {
    if (s == "inherit")
        return OomScore{};
    auto v = parse_number<int>(s);
    if (!v || *v < -max_oom_score || *v > max_oom_score)
        return std::nullopt;
    return OomScore{false, *v};
}

std::string to_string(const OomScore& s) {
    return s.inherit ? std::string("inherit") : std::to_string(s.value);
}

std::string_view to_string(OutputMode m) {
    switch (m) {
    case OutputMode::inherit:
        return "inherit";
    case OutputMode::capture:
        return "capture";
    }
    return "inherit";
}

std::string_view to_string(HealthKind k) {
    switch (k) {
    case HealthKind::grpc:
        return "grpc";
    case HealthKind::none:
        return "none";
    case HealthKind::http:
        return "http";
    case HealthKind::tcp:
        return "tcp";
    case HealthKind::exec:
        return "exec";
    case HealthKind::notify:
        return "notify";
    }
    return "grpc";
}

std::string_view to_string(RestartPolicy p) {
    switch (p) {
    case RestartPolicy::always:
        return "always";
    case RestartPolicy::on_failure:
        return "on-failure";
    case RestartPolicy::never:
        return "never";
    }
    return "always";
}

std::optional<ConfigError> check_config_text(std::string_view text, std::string_view source) {
    if (text.size() > kMaxConfigSize)
        return ConfigError{fmt::format("{}: {} bytes, more than the {} bytes a config may have",
                                       source, text.size(), kMaxConfigSize)};
    if (auto problem = NestingScan(text).run())
        return ConfigError{fmt::format("{}:{}:{}: {}", source, problem->at.line, problem->at.column,
                                       problem->what)};
    return std::nullopt;
}

std::variant<Config, ConfigError> parse_config(std::string_view toml_text,
                                               std::string_view source) {
    if (auto error = check_config_text(toml_text, source))
        return *error;
    try {
        toml::table root = toml::parse(toml_text, source);
        return read_config(root, source);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source().begin;
        return ConfigError{
            fmt::format("{}:{}:{}: {}", source, at.line, at.column, e.description())};
    } catch (const Invalid& e) {
        return ConfigError{e.message};
    } catch (const std::exception& e) {
        return ConfigError{fmt::format("{}: {}", source, e.what())};
    } catch (...) {
        return ConfigError{fmt::format("{}: unexpected error while reading the config", source)};
    }
}

std::variant<Config, ConfigError> load_config(const std::string& path) {
    auto cannot_read = [&](std::string_view why) {
        return ConfigError{fmt::format("{}: cannot read: {}", path, why)};
    };
    // O_NONBLOCK: opening a FIFO nobody writes to returns at once (and is refused below).
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd.valid())
        return cannot_read(std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return cannot_read(std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ConfigError{fmt::format("{}: not a regular file ({}); give the path of a TOML file",
                                       path, file_kind(st.st_mode))};
    auto too_large = [&](uintmax_t size) {
        return ConfigError{fmt::format("{}: {} bytes, more than the {} bytes a config may have",
                                       path, size, kMaxConfigSize)};
    };
    if (static_cast<uintmax_t>(st.st_size) > kMaxConfigSize)
        return too_large(static_cast<uintmax_t>(st.st_size));
    // Read one byte more than allowed, so a file that grew since fstat() is noticed.
    std::string text(kMaxConfigSize + 1, '\0');
    size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cannot_read(std::strerror(errno));
        if (n == 0)
            break;
        got += static_cast<size_t>(n);
    }
    if (got > kMaxConfigSize)
        return too_large(got);
    text.resize(got);
    fd.reset();
    auto result = parse_config(text, path);
    if (auto* config = std::get_if<Config>(&result))
        config->source = path;
    return result;
}

void expand_config(Config& config) {
    const DaemonConfig& d = config.daemon;
    config.daemon.control_socket = expand(config.daemon.control_socket, d);
    config.health.address = expand(config.health.address, d);
    config.incidents.dir = expand(config.incidents.dir, d);
    for (auto& arg : config.health.command)
        arg = expand(arg, d);
    for (auto& arg : config.child.args)
        arg = expand(arg, d);
    expand_tree(config.child.config, d);
}

std::optional<std::string> grpc_target_problem(std::string_view target) {
    constexpr std::string_view forms =
        "expected unix:///PATH, unix-abstract:NAME, dns:[//AUTHORITY/]HOST[:PORT], "
        "ipv4:ADDR[:PORT], ipv6:[ADDR]:PORT or HOST:PORT";
    auto wrong = [&](std::string_view what) -> std::optional<std::string> {
        return fmt::format("{}: {}", shown(target), what);
    };
    if (target.empty())
        return wrong("empty; " + std::string(forms));
    if (target.size() > kMaxPathLength)
        return fmt::format("{} bytes, longer than the {} allowed", target.size(), kMaxPathLength);
    if (target.starts_with("unix:")) {
        auto path = target.substr(5);
        if (path.starts_with("//")) {
            path.remove_prefix(2);
            if (!path.starts_with("/"))
                return wrong("unix:// takes an absolute path: unix:///run/x.sock (three "
                             "slashes)");
        }
        if (!path.starts_with("/"))
            return wrong("a unix socket needs an absolute path: unix:///run/x.sock");
        if (path.size() > kMaxUnixSocketPath)
            return wrong(fmt::format("the socket path is {} bytes, longer than the {} a unix "
                                     "socket path may have",
                                     path.size(), kMaxUnixSocketPath));
        return std::nullopt;
    }
    if (target.starts_with("unix-abstract:")) {
        // The name goes after sun_path's leading NUL.
        if (target.size() - 14 > kMaxUnixSocketPath - 1)
            return wrong(
                fmt::format("the abstract name is longer than {} bytes", kMaxUnixSocketPath - 1));
        return std::nullopt;
    }
    if (target.starts_with("dns:")) {
        auto rest = target.substr(4);
        if (rest.starts_with("//")) {
            const size_t slash = rest.find('/', 2);
            if (slash == std::string_view::npos)
                return wrong("dns://AUTHORITY must be followed by /HOST[:PORT]");
            if (slash > 2) {
                if (auto what = host_port_problem(rest.substr(2, slash - 2), false); !what.empty())
                    return wrong("DNS authority: " + what);
            }
            rest.remove_prefix(slash + 1);
        }
        if (auto what = host_port_problem(rest, false); !what.empty())
            return wrong(what);
        return std::nullopt;
    }
    if (target.starts_with("ipv4:") || target.starts_with("ipv6:")) {
        const int family = target[3] == '4' ? AF_INET : AF_INET6;
        if (auto what = address_list_problem(target.substr(5), family); !what.empty())
            return wrong(what);
        return std::nullopt;
    }
    if (target.find('/') != std::string_view::npos)
        return wrong("a path is not a gRPC target (gRPC would look it up in DNS); write "
                     "unix://PATH for a unix socket");
    if (auto what = host_port_problem(target, true); !what.empty())
        return wrong(what + "; " + std::string(forms));
    return std::nullopt;
}

std::optional<ConfigError> check_expanded_config(const Config& c, std::string_view address_origin) {
    auto error = [&](std::string_view key, std::string_view what) {
        return ConfigError{fmt::format("{}: {}: {}", c.source, key, what)};
    };
    auto too_long = [](size_t size, size_t max) {
        return fmt::format("expands to {} bytes, longer than the {} allowed", size, max);
    };
    if (c.daemon.control_socket.size() > kMaxPathLength)
        return error("daemon.control_socket",
                     too_long(c.daemon.control_socket.size(), kMaxPathLength));
    if (c.incidents.dir.size() > kMaxPathLength)
        return error("incidents.dir", too_long(c.incidents.dir.size(), kMaxPathLength));
    if (!c.incidents.dir.empty() && c.incidents.dir.front() != '/')
        return error("incidents.dir",
                     fmt::format("{} is not an absolute path (after ${{root_dir}} and "
                                 "${{state_dir}} are expanded)",
                                 shown(c.incidents.dir)));
    for (size_t i = 0; i < c.child.args.size(); ++i)
        if (c.child.args[i].size() > kMaxArgLength)
            return error(fmt::format("child.args[{}]", i),
                         too_long(c.child.args[i].size(), kMaxArgLength));
    if (c.health.kind == HealthKind::grpc) {
        if (auto what = grpc_target_problem(c.health.address))
            return ConfigError{fmt::format("{}: {}", address_origin, *what)};
    }
    if (c.health.kind == HealthKind::http || c.health.kind == HealthKind::tcp) {
        if (auto what = endpoint_problem(c.health.kind, c.health.address))
            return ConfigError{fmt::format("{}: {}", address_origin, *what)};
    }
    const size_t rendered = rendered_size(c.child.config, 0, max_rendered_child_config);
    if (rendered > max_rendered_child_config)
        return error("child.config",
                     fmt::format("would be written as more than {} bytes (nested tables "
                                 "repeat their whole dotted path, and ${{state_dir}} and "
                                 "${{root_dir}} their directory); make it smaller",
                                 max_rendered_child_config));
    return std::nullopt;
}

std::string to_toml(const Config& c) {
    std::string out;
    auto line = [&out](std::string_view key, std::string_view value) {
        out += fmt::format("{} = {}\n", key, value);
    };
    auto strings = [](const std::vector<std::string>& v) {
        std::string items;
        for (const auto& s : v)
            items += fmt::format("{}{}", items.empty() ? "" : ", ", quote(s));
        return "[" + items + "]";
    };

    out += "[daemon]\n";
    line("state_dir", quote(c.daemon.state_dir));
    line("root_dir", quote(c.daemon.root_dir));
    line("log_level", quote(to_string(c.daemon.log_level)));
    line("control_socket", quote(c.daemon.control_socket));
    line("control_socket_mode", quote(fmt::format("{:04o}", c.daemon.control_socket_mode)));
    line("control_socket_group", quote(c.daemon.control_socket_group));
    line("allowed_uids", fmt::format("[{}]", fmt::join(c.daemon.allowed_uids, ", ")));

    out += "\n[child]\n";
    line("binary", quote(c.child.binary));
    line("args", strings(c.child.args));
    line("config_file", quote(c.child.config_file));
    line("config_flag", quote(c.child.config_flag));
    line("log_level_flag", quote(c.child.log_level_flag));
    line("oom_score_adj", c.child.oom_score_adj.inherit
                              ? quote("inherit")
                              : std::to_string(c.child.oom_score_adj.value));
    line("stop_signal", quote(signal_name(c.child.stop_signal)));
    line("stop_timeout", quote(format_duration(c.child.stop_timeout)));
    line("new_session", c.child.new_session ? "true" : "false");
    line("output", quote(to_string(c.child.output)));
    line("user", quote(c.child.user));
    line("group", quote(c.child.group));
    line("supplementary_groups", strings(c.child.supplementary_groups));
    line("working_directory", quote(c.child.working_directory));
    line("umask", quote(fmt::format("{:04o}", c.child.umask)));
    line("env_files", strings(c.child.env_files));
    line("inherit_env", c.child.inherit_env ? "true" : "false");
    line("no_new_privileges", c.child.no_new_privileges ? "true" : "false");
    out += "\n";
    toml::table limits;
    for (const auto& l : c.child.limits)
        limits.insert(rlimit_name(l.resource), format_rlimit(l.value));
    out += child_table_toml("limits", std::move(limits));
    out += "\n";
    toml::table env;
    for (const auto& [k, v] : c.child.env)
        env.insert(k, v);
    out += child_table_toml("env", std::move(env));
    out += "\n";
    out += child_table_toml("config", c.child.config);

    out += "\n[health]\n";
    line("kind", quote(to_string(c.health.kind)));
    line("address", quote(c.health.address));
    line("service", quote(c.health.service));
    line("command", strings(c.health.command));
    line("interval", quote(format_duration(c.health.interval)));
    line("timeout", quote(format_duration(c.health.timeout)));
    line("failure_threshold", std::to_string(c.health.failure_threshold));
    line("startup_timeout", quote(format_duration(c.health.startup_timeout)));
    line("dump_signal", quote(c.health.dump_signal ? signal_name(*c.health.dump_signal) : ""));
    line("dump_wait", quote(format_duration(c.health.dump_wait)));
    line("watchdog", quote(c.health.watchdog ? format_duration(*c.health.watchdog) : ""));

    out += "\n[restart]\n";
    line("policy", quote(to_string(c.restart.policy)));
    line("backoff_initial", quote(format_duration(c.restart.backoff_initial)));
    line("backoff_max", quote(format_duration(c.restart.backoff_max)));
    line("reset_after", quote(format_duration(c.restart.reset_after)));
    line("start_limit_burst", std::to_string(c.restart.start_limit_burst));
    line("start_limit_interval", quote(format_duration(c.restart.start_limit_interval)));
    line("rollback", c.restart.rollback ? "true" : "false");

    out += "\n[metrics]\n";
    line("listen", quote(c.metrics.listen));

    out += "\n[incidents]\n";
    line("dir", quote(c.incidents.dir));
    line("keep", std::to_string(c.incidents.keep));
    return out;
}

} // namespace vigil
