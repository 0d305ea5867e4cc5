// vigild's log: line format, and the writer that keeps stderr's blocking write(2) off the
// caller's thread (a bounded queue; drops counted and reported once stderr takes bytes).
#include "vigil/log.hpp"
#include "vigil/output_capture.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <poll.h>
#include <regex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

constexpr auto kDeadline = 20s;

struct Pipe {
    int r = -1, w = -1;
    explicit Pipe(int size = 0) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
        if (size > 0)
            REQUIRE(::fcntl(w, F_SETPIPE_SZ, size) >= size);
        REQUIRE(::fcntl(r, F_SETFL, O_NONBLOCK) == 0);
    }
    ~Pipe() {
        ::close(r);
        ::close(w);
    }
    // Reads what is there now (or waits up to `wait` for something).
    std::string read_some(std::chrono::milliseconds wait = 50ms) const {
        struct pollfd p {
            r, POLLIN, 0
        };
        if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0)
            return {};
        std::string out;
        char buf[65536];
        for (;;) {
            const ssize_t n = ::read(r, buf, sizeof buf);
            if (n <= 0)
                break;
            out.append(buf, static_cast<size_t>(n));
        }
        return out;
    }
};

std::string drop_line(std::uint64_t n) {
    return "dropped " + std::to_string(n) + "\n";
}

std::string data_line(int i) {
    return "L" + std::to_string(i) + " " + std::string(90, 'x') + "\n";
}

// Splits whole lines off `buf` (keeps an unfinished tail there).
std::vector<std::string> take_lines(std::string& buf) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
        out.push_back(buf.substr(start, nl - start));
    buf.erase(0, start);
    return out;
}

} // namespace

TEST_CASE("log line format: a journald priority prefix or else a timestamp and the level",
          "[unit][log]") {
    const auto t = std::chrono::system_clock::now();
    struct Row {
        LogLevel level;
        const char* journal;
    };
    for (const auto& row : {Row{LogLevel::trace, "<7>hello\n"}, Row{LogLevel::debug, "<7>hello\n"},
                            Row{LogLevel::info, "<6>hello\n"}, Row{LogLevel::warn, "<4>hello\n"},
                            Row{LogLevel::error, "<3>hello\n"}}) {
        CHECK(log::format_line(row.level, "hello", true, t) == row.journal);
    }
    const std::string plain = log::format_line(LogLevel::warn, "hello", false, t);
    CHECK(std::regex_match(
        plain, std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z+\-0-9]+ warn  hello\n)")));
}

TEST_CASE("log writer: a reader that never reads never blocks the caller and every line is "
          "written or reported as dropped once the reader catches up",
          "[unit][log]") {
    Pipe pipe(4096);
    constexpr int kLines = 3000;
    int refused = 0;
    {
        LogWriter writer(pipe.w, 16 * 1024, drop_line);
        // Nobody reads: the writer thread is stuck in write(2) after the first few KiB.
        // Every push still returns at once (a blocking push would hang the test here).
        for (int i = 0; i < kLines; ++i)
            refused += writer.push(data_line(i)) ? 0 : 1;
        CHECK(refused > 0);
        CHECK(writer.dropped_total() == static_cast<std::uint64_t>(refused));
        CHECK_FALSE(writer.flush(100ms)); // stderr takes nothing: a bounded wait, false

        // Now read: each pushed line arrives whole, in order, or is counted in a drop line.
        std::string buf;
        int received = 0;
        std::uint64_t reported = 0;
        int last = -1;
        bool in_order = true;
        const auto end = std::chrono::steady_clock::now() + kDeadline;
        while (received + static_cast<int>(reported) < kLines &&
               std::chrono::steady_clock::now() < end) {
            buf += pipe.read_some();
            for (const auto& line : take_lines(buf)) {
                if (line.rfind("dropped ", 0) == 0) {
                    reported += std::stoull(line.substr(8));
                } else {
                    REQUIRE(line.size() > 1);
                    REQUIRE(line[0] == 'L');
                    const int i = std::stoi(line.substr(1));
                    in_order = in_order && i > last;
                    CHECK(line + "\n" == data_line(i));
                    last = i;
                    ++received;
                }
            }
        }
        CHECK(in_order);
        CHECK(reported == static_cast<std::uint64_t>(refused));
        CHECK(received == kLines - refused);
        CHECK(writer.flush(kDeadline));
    }
    CHECK(pipe.read_some(0ms).empty());
}

TEST_CASE("log writer: lines from several threads arrive whole", "[unit][log]") {
    Pipe pipe;
    constexpr int kThreads = 4;
    constexpr int kPerThread = 500;
    std::atomic<bool> done{false};
    std::string got;
    std::thread reader([&] {
        while (!done.load())
            got += pipe.read_some(10ms);
        got += pipe.read_some(0ms);
    });
    {
        LogWriter writer(pipe.w, 1024 * 1024, drop_line);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&writer, t] {
                for (int i = 0; i < kPerThread; ++i)
                    writer.push(data_line(t * kPerThread + i));
            });
        for (auto& th : threads)
            th.join();
        CHECK(writer.flush(kDeadline));
        CHECK(writer.dropped_total() == 0);
    }
    done = true;
    reader.join();
    std::vector<bool> seen(kThreads * kPerThread, false);
    for (const auto& line : take_lines(got)) {
        REQUIRE(line[0] == 'L');
        const int i = std::stoi(line.substr(1));
        REQUIRE(i >= 0);
        REQUIRE(i < kThreads * kPerThread);
        CHECK(line + "\n" == data_line(i));
        seen[static_cast<size_t>(i)] = true;
    }
    CHECK(std::count(seen.begin(), seen.end(), true) == kThreads * kPerThread);
}

TEST_CASE("log writer: a line bigger than the queue is dropped and reported", "[unit][log]") {
    Pipe pipe;
    LogWriter writer(pipe.w, 64, drop_line);
    CHECK_FALSE(writer.push(std::string(100, 'y') + "\n"));
    CHECK(writer.push("small\n"));
    CHECK(writer.flush(kDeadline));
    const std::string out = pipe.read_some(0ms);
    CHECK(out.find("dropped 1\n") != std::string::npos);
    CHECK(out.find("small\n") != std::string::npos);
    CHECK(out.find('y') == std::string::npos);
}

TEST_CASE("a captured line is logged at the level the child wrote into it", "[unit][log]") {
    struct Row {
        const char* text;
        LogLevel level;
    };
    const Row rows[] = {
        {R"(time="2026-11-30T18:00:14Z" level=error msg="failed to load plugin")", LogLevel::error},
        {R"(time="2026-11-30T18:00:14Z" level=fatal msg="bye")", LogLevel::error},
        {R"(time="2026-11-30T18:00:14Z" level=warning msg="deprecated")", LogLevel::warn},
        {R"(time="2026-11-30T18:00:14Z" level=info msg=serving...)", LogLevel::info},
        {R"(time="2026-11-30T18:00:14Z" level=debug msg="x")", LogLevel::debug},
        {R"({"level":"warn","msg":"json"})", LogLevel::warn},
        {R"({"level":"error","msg":"json"})", LogLevel::error},
        {"plain text without a level", LogLevel::info},
        {"level=bogus", LogLevel::info},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        CHECK(child_line_level(r.text) == r.level);
    }
}
