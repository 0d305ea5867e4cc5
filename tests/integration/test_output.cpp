// vigild's own log under pressure, through the real vigild: a stderr nobody reads never
// stalls the loop (status answers, SIGTERM exits), drops are counted and reported, and a
// captured child's control bytes and invalid UTF-8 reach neither the log nor vigilctl raw.
#include "harness.hpp"

#include "vigil/log.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <regex>
#include <sys/wait.h>
#include <unistd.h>

using namespace vt;

namespace {

// Enough captured lines (~100 bytes each) to fill vigild's log queue and a pipe's buffer.
constexpr int kFloodLines = 20000;

struct Ctl {
    std::optional<int> code; // nullopt: no exit within the harness deadline
    std::string out;
    Ms took;
};

Ctl vigilctl(const TempDir& dir, std::vector<std::string> args) {
    static int n = 0;
    const std::string out = dir / ("ctl." + std::to_string(++n) + ".out");
    std::vector<std::string> argv{VIGILCTL_PATH, "--socket", dir / "state/vigild.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto began = std::chrono::steady_clock::now();
    Process p(argv, out);
    auto code = p.wait_exit();
    return {code, p.output(),
            std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - began)};
}

// vigild with stdout and stderr on a pipe that the test reads only when it chooses to.
class PipedVigild {
public:
    PipedVigild(const TempDir& dir, const std::string& config_body) {
        const std::string conf = dir / "vigild.toml";
        write_file(conf, daemon_table(dir) + config_body);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::dup2(fds[1], 1);
            ::dup2(fds[1], 2);
            const int devnull = ::open("/dev/null", O_RDONLY);
            ::dup2(devnull, 0);
            ::execl(VIGILD_PATH, VIGILD_PATH, "--config", conf.c_str(), nullptr);
            ::_exit(127);
        }
        ::close(fds[1]);
        read_end_ = fds[0];
        ::fcntl(read_end_, F_SETFL, O_NONBLOCK);
    }
    // A test that failed half-way: SIGTERM first, so that vigild stops its child too.
    ~PipedVigild() {
        if (!exited_) {
            ::kill(pid_, SIGTERM);
            if (!wait_until([this] { return exited(); })) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, nullptr, 0);
            }
        }
        ::close(read_end_);
    }
    PipedVigild(const PipedVigild&) = delete;
    PipedVigild& operator=(const PipedVigild&) = delete;

    pid_t pid() const { return pid_; }
    // Reads what the pipe holds now into output(); false at EOF.
    bool drain() {
        char buf[65536];
        for (;;) {
            const ssize_t n = ::read(read_end_, buf, sizeof buf);
            if (n > 0) {
                output_.append(buf, static_cast<size_t>(n));
                continue;
            }
            return n < 0; // EAGAIN: open but empty; 0: EOF
        }
    }
    bool exited() {
        if (!exited_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                exited_ = true;
                code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
        }
        return exited_;
    }
    int code() const { return code_; }
    const std::string& output() const { return output_; }

private:
    pid_t pid_ = -1;
    int read_end_ = -1;
    bool exited_ = false;
    int code_ = -1;
    std::string output_;
};

std::string flood_child(const TempDir& dir) {
    return fake_child_table(
               {"--print-lines", std::to_string(kFloodLines), "--stamp-file", dir / "stamps"},
               "output = \"capture\"") +
           "[health]\nkind = \"none\"\n";
}

// The loop has read every line the child printed: `vigilctl logs` shows the last one.
bool all_lines_captured(const TempDir& dir) {
    const std::string last =
        "line " + std::to_string(kFloodLines) + " of " + std::to_string(kFloodLines) + " ";
    return wait_until([&] {
        const auto logs = vigilctl(dir, {"logs"});
        return logs.code == 0 && logs.out.find(last) != std::string::npos;
    });
}

} // namespace

TEST_CASE("a stderr nobody reads: vigild keeps answering and SIGTERM still ends it", "[e2e][log]") {
    become_subreaper();
    TempDir dir;
    PipedVigild v(dir, flood_child(dir));
    // The child prints ~2 MB of lines; vigild's log of them fills the pipe (64 KiB) and its
    // own queue long before the last one. The test never reads the pipe here.
    REQUIRE(all_lines_captured(dir));
    const auto status = vigilctl(dir, {"status"});
    CHECK(status.code == 0);
    INFO(status.out);
    CHECK(status.out.find("State: running") != std::string::npos);
    CHECK(status.took < 5s);

    const auto began = std::chrono::steady_clock::now();
    REQUIRE(::kill(v.pid(), SIGTERM) == 0);
    REQUIRE(wait_until([&] { return v.exited(); }));
    CHECK(v.code() == 0);
    // The exit waits a bounded time (2 s) for the log to drain, then goes anyway; the
    // bound here is wait_until's generous 20 s (a loaded machine once took 12 s).
    const auto exit_took = std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - began);
    INFO("SIGTERM to exit: " << exit_took.count() << " ms");
    CHECK(exit_took >= vigil::log::kExitFlushTimeout);
    v.drain();
    CHECK(v.output().find("vigild 0.1.0 (pid ") != std::string::npos);
}

TEST_CASE("a stderr nobody reads: dropped lines are counted and reported once it is read",
          "[e2e][log]") {
    become_subreaper();
    TempDir dir;
    PipedVigild v(dir, flood_child(dir));
    REQUIRE(all_lines_captured(dir));
    CHECK(vigilctl(dir, {"status"}).code == 0);

    // Reading again: the writer gets through what it queued, then says how much it dropped.
    const std::regex dropped_re(R"(vigild dropped (\d+) log lines \(stderr was not being read\))");
    REQUIRE(wait_until([&] {
        v.drain();
        return std::regex_search(v.output(), dropped_re);
    }));

    // A normal exit loses nothing that was queued: the last line is there.
    REQUIRE(::kill(v.pid(), SIGTERM) == 0);
    REQUIRE(wait_until([&] {
        v.drain();
        return v.exited();
    }));
    CHECK(v.code() == 0);
    REQUIRE(wait_until([&] { return !v.drain(); })); // EOF: every writer is gone
    const std::string& out = v.output();
    CHECK(out.find("vigild exits 0") != std::string::npos);

    // Every captured line was either written whole or counted as dropped.
    std::uint64_t dropped = 0;
    for (auto it = std::sregex_iterator(out.begin(), out.end(), dropped_re);
         it != std::sregex_iterator(); ++it)
        dropped += std::stoull((*it)[1].str());
    const std::regex child_line_re(R"(child\[\d+\] stdout: line \d+ of \d+ [a-z0-9]+\n)");
    const auto written = static_cast<std::uint64_t>(std::distance(
        std::sregex_iterator(out.begin(), out.end(), child_line_re), std::sregex_iterator()));
    INFO("written " << written << ", dropped " << dropped);
    CHECK(dropped > 0);
    CHECK(written < static_cast<std::uint64_t>(kFloodLines));
    CHECK(written + dropped >= static_cast<std::uint64_t>(kFloodLines));
}

TEST_CASE("a child's ESC CR NUL and invalid UTF-8 bytes reach the log and vigilctl escaped",
          "[e2e][log][capture]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--print-raw"}, "output = \"capture\""));
    const std::string escaped = "raw: \\x1b[31mred\\x1b[0m cr\\x0dnul\\x00del\\x7f bad\\xff "
                                "trunc\\xe2\\x82 c1\\u009b caf\xc3\xa9 tab\tend";
    REQUIRE(v.wait_log(escaped));
    Ctl logs;
    REQUIRE(wait_until([&] {
        logs = vigilctl(dir, {"logs"});
        return logs.code == 0 && logs.out.find(escaped) != std::string::npos;
    }));
    for (const std::string& text : {v.log(), logs.out}) {
        CHECK(text.find('\x1b') == std::string::npos);
        CHECK(text.find('\r') == std::string::npos);
        CHECK(text.find('\0') == std::string::npos);
        CHECK(text.find('\xff') == std::string::npos);
    }
    auto json = vigilctl(dir, {"--json", "logs"});
    CHECK(json.code == 0);
    CHECK(json.out.find("raw: \\\\x1b[31mred") != std::string::npos);
    v.process().signal(SIGTERM); // stops the child too
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("gRPC's own log lines go through vigild's log (its queue and its format)", "[e2e][log]") {
    become_subreaper();
    TempDir dir;
    // GRPC_VERBOSITY=debug makes gRPC log at its start (vigild starts it at the first
    // control connection); by default it writes to stderr itself, from its threads, in its
    // own format ("D1130 17:41:47.088 ...").
    Vigild v(dir, fake_child_table({}) + "[health]\nkind = \"none\"\n", {},
             {{"GRPC_VERBOSITY", "debug"}});
    REQUIRE(v.wait_log("-> running"));
    CHECK(vigilctl(dir, {"status"}).code == 0);
    REQUIRE(v.wait_log(" grpc: "));
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    const std::string log = v.log();
    const std::regex grpc_format(R"((^|\n)[DIE]\d{4} \d\d:\d\d:\d\d)");
    CHECK_FALSE(std::regex_search(log, grpc_format));
    const std::regex ours(
        R"((^|\n)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z+\-0-9]+ debug grpc: )");
    CHECK(std::regex_search(log, ours));
}
