// Hostile config files through the real vigild: a nesting too deep for any parser's stack
// is a config error (exit 78) at start and a failed reload (the running child untouched),
// never a crash; a FIFO as the config file does not block.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <sys/stat.h>

using namespace vt;

namespace {

constexpr int kDeepLevels = 100'000;

// [child.config.k.k.k...]: a table header 100,000 keys deep.
std::string deep_table_header() {
    std::string s = "[child.config";
    for (int i = 0; i < kDeepLevels; ++i)
        s += ".k";
    return s + "]\nx = 1\n";
}

// k.k.k... = 1 inside [child.config]: a dotted key 100,000 keys deep.
std::string deep_dotted_key() {
    std::string s = "[child.config]\nk";
    for (int i = 0; i < kDeepLevels; ++i)
        s += ".k";
    return s + " = 1\n";
}

} // namespace

TEST_CASE("a 100000-deep config is a config error for --check-config and at start",
          "[e2e][bounds]") {
    TempDir dir;
    for (const auto& [name, body] :
         {std::pair{"header", deep_table_header()}, std::pair{"dotted", deep_dotted_key()}}) {
        INFO(name);
        const std::string conf = dir / (std::string(name) + ".toml");
        write_file(conf, daemon_table(dir) + body);
        {
            Process p({VIGILD_PATH, "--check-config", "--config", conf},
                      dir / (std::string(name) + "-check.log"));
            REQUIRE(p.wait_exit() == 78);
            CHECK(p.output().find(conf + ":") != std::string::npos);
            CHECK(p.output().find("nested deeper than") != std::string::npos);
        }
        {
            Process p({VIGILD_PATH, "--config", conf}, dir / (std::string(name) + "-start.log"));
            REQUIRE(p.wait_exit() == 78);
            CHECK(p.output().find("nested deeper than") != std::string::npos);
            CHECK_FALSE(file_exists(dir / "state/child.pid"));
        }
    }
}

TEST_CASE("SIGHUP with a 100000-deep config keeps vigild and its child running", "[e2e][bounds]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table({}) + "[health]\nkind = \"none\"\n";
    Vigild v(dir, body);
    REQUIRE(v.wait_log("-> running"));
    const auto pid = v.wait_child_pid();
    REQUIRE(pid);
    write_file(dir / "vigild.toml", daemon_table(dir) + body + deep_table_header());
    const size_t mark = v.log().size();
    v.process().signal(SIGHUP);
    REQUIRE(v.wait_log("reload failed, keeping the running configuration", kDeadline, mark));
    CHECK(v.log().find("nested deeper than", mark) != std::string::npos);
    CHECK_FALSE(v.process().exited());
    CHECK(process_alive(*pid));
    CHECK(read_pid_file(v.state_dir() + "/child.pid") == pid);
    // Still serving signals: a clean stop stops the same child.
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(*pid);
    }));
}

TEST_CASE("a FIFO or a device as the config file is refused at once", "[e2e][bounds]") {
    TempDir dir;
    const std::string fifo = dir / "fifo.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // Nobody writes to the FIFO: an open() without O_NONBLOCK would block forever.
    int n = 0;
    for (const std::string& path : {fifo, std::string("/dev/zero")}) {
        INFO(path);
        Process p({VIGILD_PATH, "--check-config", "--config", path},
                  dir / ("check" + std::to_string(++n) + ".log"));
        REQUIRE(p.wait_exit() == 78);
        CHECK(p.output().find(path + ": not a regular file") != std::string::npos);
    }
}

TEST_CASE("a bare path as the health address is a config error, from the file or the flag",
          "[e2e][bounds]") {
    TempDir dir;
    const std::string conf = dir / "bare.toml";
    write_file(conf, daemon_table(dir) + "[health]\naddress = \"${state_dir}/c.sock\"\n");
    {
        Process p({VIGILD_PATH, "--check-config", "--config", conf}, dir / "file.log");
        REQUIRE(p.wait_exit() == 78);
        CHECK(p.output().find(conf + ": health.address: \"" + dir / "state/c.sock" +
                              "\": a path is not a gRPC target") != std::string::npos);
        CHECK(p.output().find("write unix://PATH") != std::string::npos);
    }
    {
        Process p({VIGILD_PATH, "--check-config", "--state-dir", dir / "s", "--health-address",
                   dir / "c.sock"},
                  dir / "flag.log");
        REQUIRE(p.wait_exit() == 78);
        CHECK(p.output().find("--health-address: ") != std::string::npos);
        CHECK(p.output().find("write unix://PATH") != std::string::npos);
    }
}
