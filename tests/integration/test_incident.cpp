// Incident reports through the real vigild: a hung child killed after its dump, and a
// child that dies by itself (issue 11, item 2).
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <regex>

using namespace vt;

namespace {

std::string health(const TempDir& dir) {
    return "[health]\naddress = \"unix://" + dir / "c.sock" +
           "\"\ninterval = \"100ms\"\ntimeout = \"300ms\"\nfailure_threshold = 2\n"
           "dump_signal = \"SIGUSR1\"\ndump_wait = \"300ms\"\n";
}

// The id in "incident report ID written (...)".
std::string written_id(const std::string& log) {
    std::smatch m;
    const std::regex re("incident report ([0-9TZ-]+) written");
    return std::regex_search(log, m, re) ? m[1].str() : std::string();
}

} // namespace

TEST_CASE("incident: a hung child's report has its /proc, its dump and its end",
          "[e2e][incident]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--socket", dir / "c.sock", "--hang-after", "600"},
                                   "output = \"capture\"\n") +
                      health(dir) + "[restart]\npolicy = \"never\"\n");
    REQUIRE(v.wait_log("-> running"));
    REQUIRE(v.wait_log("(hang of pid "));
    const std::string id = written_id(v.log());
    REQUIRE_FALSE(id.empty());
    CHECK(std::filesystem::exists(dir / ("root/incidents/incident-" + id + ".txt")));
    const auto list = run_vigilctl(dir, {"incidents"});
    CHECK(list.code == 0);
    CHECK(list.out.find(id + "  hang") != std::string::npos);
    const auto report = run_vigilctl(dir, {"incidents", id});
    REQUIRE(report.code == 0);
    const std::string& r = report.out;
    INFO(r);
    CHECK(r.find("kind: hang\n") != std::string::npos);
    CHECK(r.find("reason: ") != std::string::npos);
    CHECK(r.find("deadline exceeded") != std::string::npos);            // the checks
    CHECK(r.find("/proc/PID/status:\n    Name:") != std::string::npos); // as it hung
    CHECK(r.find("wchan: ") != std::string::npos);
    CHECK(r.find("open fds: ") != std::string::npos);
    CHECK(r.find("received SIGUSR1") != std::string::npos); // what it wrote in dump_wait
    CHECK(r.find("exit: killed by SIGKILL") != std::string::npos);
    CHECK(run_vigilctl(dir, {"status"}).out.find("Incident: " + id) != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("incident: a SIGSTOPped child's report shows it stopped", "[e2e][incident]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--socket", dir / "c.sock"}) + health(dir) +
                      "[restart]\npolicy = \"never\"\n");
    REQUIRE(v.wait_log("-> running"));
    const pid_t pid = *v.wait_child_pid();
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    REQUIRE(v.wait_log("(hang of pid " + std::to_string(pid)));
    const std::string id = written_id(v.log());
    const std::string r = read_file(dir / ("root/incidents/incident-" + id + ".txt"));
    INFO(r);
    CHECK(r.find("State:\tT (stopped)") != std::string::npos);
    CHECK(r.find("wchan: do_signal_stop") != std::string::npos);
    CHECK(r.find("exit: killed by SIGKILL") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("incident: a child that dies by itself leaves its last lines; keep bounds them",
          "[e2e][incident]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--crash-after", "200"}, "output = \"capture\"\n") +
                      "[health]\nkind = \"none\"\n[restart]\nbackoff_initial = \"50ms\"\n"
                      "backoff_max = \"50ms\"\n[incidents]\nkeep = 2\n");
    // Three deaths, three reports, two kept.
    REQUIRE(wait_until([&] {
        std::size_t n = 0, at = 0;
        const std::string log = v.log();
        while ((at = log.find("(death of pid ", at)) != std::string::npos) {
            ++n;
            ++at;
        }
        return n >= 3;
    }));
    REQUIRE(wait_until([&] {
        std::size_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator(dir / "root/incidents")) {
            (void)e;
            ++n;
        }
        return n == 2;
    }));
    const std::string id = written_id(v.log());
    const auto report = run_vigilctl(dir, {"incidents"});
    std::smatch m;
    REQUIRE(std::regex_search(report.out, m, std::regex("([0-9TZ-]+)  death")));
    const auto one = run_vigilctl(dir, {"incidents", m[1].str()});
    INFO(one.out);
    CHECK(one.out.find("kind: death\n") != std::string::npos);
    CHECK(one.out.find("crashing with SIGABRT") != std::string::npos); // its last words
    CHECK(one.out.find("exit: killed by SIGABRT") != std::string::npos);
    CHECK(one.out.find("/proc/PID/status") == std::string::npos); // nothing left to read
    CHECK(run_vigilctl(dir, {"incidents", "20000101T000000Z-1"}).code == 1);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
