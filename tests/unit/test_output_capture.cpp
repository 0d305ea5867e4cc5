// Captured child output: escaping of control bytes and invalid UTF-8 (a table), and the
// capture itself fed through real pipes on an io_context.
#include "vigil/output_capture.hpp"

#include "vigil/log.hpp"

#include "vigil/v1/supervisor.pb.h"

#include <boost/locale/utf.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <unistd.h>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

// True if `s` is valid UTF-8 without control characters other than tab.
bool printable_utf8(const std::string& s) {
    using utf = boost::locale::utf::utf_traits<char>;
    for (auto p = s.begin(); p != s.end();) {
        const auto cp = utf::decode(p, s.end());
        if (cp == boost::locale::utf::illegal || cp == boost::locale::utf::incomplete)
            return false;
        if ((cp < 0x20 && cp != '\t') || (cp >= 0x7F && cp <= 0x9F))
            return false;
    }
    return true;
}

std::string bytes(std::initializer_list<int> list) {
    std::string s;
    for (int b : list)
        s += static_cast<char>(b);
    return s;
}

} // namespace

TEST_CASE("escape_child_text: control bytes and invalid UTF-8 are escaped and the rest is kept",
          "[unit][capture]") {
    struct Row {
        std::string raw;
        std::string escaped;
    };
    const std::vector<Row> rows{
        {"plain text", "plain text"},
        {"", ""},
        {"tab\there", "tab\there"},
        {"\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"},
        {"a\rb", "a\\x0db"},
        {std::string("a\0b", 3), "a\\x00b"},
        {"bell\a", "bell\\x07"},
        {"del\x7f", "del\\x7f"},
        {"back\\slash \\x1b", "back\\slash \\x1b"}, // kept: only vigild's escapes are \x
        {"caf\xc3\xa9", "caf\xc3\xa9"},             // U+00E9, 2 bytes
        {"\xe2\x82\xac", "\xe2\x82\xac"},           // U+20AC, 3 bytes
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},   // U+1F600, 4 bytes
        {"\xc2\xa0", "\xc2\xa0"},                   // U+00A0, first after the C1 range
        {"\xc2\x9b[31m", "\\u009b[31m"},            // C1 CSI
        {"\xc2\x80", "\\u0080"},
        {"\xff", "\\xff"},
        {"bad\xfe\xff.", "bad\\xfe\\xff."},
        {"\xe2\x82", "\\xe2\\x82"},                   // truncated at the end
        {"\xe2\x82x", "\\xe2\\x82x"},                 // truncated in the middle
        {"\x80\xbf", "\\x80\\xbf"},                   // lone continuation bytes
        {"\xc0\xaf", "\\xc0\\xaf"},                   // overlong "/"
        {"\xe0\x80\xaf", "\\xe0\\x80\\xaf"},          // overlong, 3 bytes
        {"\xed\xa0\x80", "\\xed\\xa0\\x80"},          // UTF-16 surrogate U+D800
        {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"}, // beyond U+10FFFF
        {"\xc3\x28", "\\xc3("},                       // a lead byte, then ASCII
    };
    for (const auto& row : rows) {
        INFO("raw: " << row.escaped);
        CHECK(escape_child_text(row.raw) == row.escaped);
    }
}

TEST_CASE("escape_child_text: any byte string becomes printable UTF-8 a proto3 string takes",
          "[unit][capture]") {
    std::vector<std::string> inputs;
    for (int b = 0; b < 256; ++b) {
        inputs.push_back(std::string(1, static_cast<char>(b)));
        inputs.push_back("x" + std::string(1, static_cast<char>(b)) + "\xc3\xa9");
        for (int c : {0x80, 0xa0, 0xbf, 0x28})
            inputs.push_back(bytes({b, c, c, c}));
    }
    for (const auto& raw : inputs) {
        const std::string out = escape_child_text(raw);
        INFO("escaped: " << out);
        CHECK(printable_utf8(out));
        v1::LogLine proto;
        proto.set_text(out);
        std::string wire;
        CHECK(proto.SerializeToString(&wire));
    }
}

TEST_CASE("output capture: captured lines are escaped and a long line is cut between characters",
          "[unit][capture]") {
    const LogLevel was = log::level();
    log::set_level(LogLevel::warn); // the 16 KiB line is not worth seeing on stderr
    asio::io_context io;
    OutputCapture capture(io);
    auto pipes = capture.prepare();
    REQUIRE(pipes);
    capture.attach(::getpid());

    // 'a' x (kMaxLineBytes - 1), then U+00E9 straddling the cut at kMaxLineBytes.
    const std::string long_line = std::string(kMaxLineBytes - 1, 'a') + "\xc3\xa9" + "tail\n";
    const std::string raw =
        "\x1b]0;title\x07 x\r\n" + std::string("nul\0end\n", 8) + long_line + "bad\xff\n";
    REQUIRE(::write(pipes->stdout_w.get(), raw.data(), raw.size()) ==
            static_cast<ssize_t>(raw.size()));
    pipes->stdout_w.reset();
    pipes->stderr_w.reset();
    io.run_for(10s); // returns once both pipes hit EOF

    const auto lines = capture.lines();
    REQUIRE(lines.size() == 5);
    CHECK(lines[0].text == "\\x1b]0;title\\x07 x\\x0d");
    CHECK(lines[1].text == "nul\\x00end");
    CHECK(lines[2].text == std::string(kMaxLineBytes - 1, 'a'));
    CHECK(lines[3].text == "\xc3\xa9tail");
    CHECK(lines[4].text == "bad\\xff");
    for (const auto& l : lines)
        CHECK(printable_utf8(l.text));
    log::set_level(was);
}
