// Incident reports: what they hold, their bounds, the store (issue 11, item 2).
#include "vigil/incident.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace vigil;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

struct TmpDir {
    std::string path;
    TmpDir() {
        char t[] = "/tmp/vigil-incident.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TmpDir() { std::filesystem::remove_all(path); }
};

Incident sample(const std::string& id, pid_t pid) {
    Incident in;
    in.id = id;
    in.at = SystemTime(std::chrono::seconds(1'796'068'500));
    in.pid = pid;
    in.kind = "hang";
    in.reason = "3 health checks failed in a row (last: deadline exceeded (3s))";
    in.probes = {{in.at, "SERVING", std::chrono::milliseconds(2)},
                 {in.at, "deadline exceeded (3s)", std::chrono::milliseconds(3000)}};
    in.proc = collect_proc_evidence(::getpid());
    in.output = {"stderr: goroutine 1 [running]:", "stderr: main.main()"};
    in.output_note = "what it wrote from the kill decision to its death (dump_wait)";
    in.exit = ExitStatus{ExitStatus::Kind::signaled, SIGKILL};
    return in;
}

} // namespace

TEST_CASE("incident: /proc evidence of a live process", "[unit][incident]") {
    const auto e = collect_proc_evidence(::getpid());
    CHECK_THAT(e.status, Contains("State:"));
    CHECK_THAT(e.limits, Contains("Max open files"));
    CHECK(e.fd_count > 2);
    const auto gone = collect_proc_evidence(0x7ffffff0);
    CHECK_THAT(gone.status, StartsWith("(unreadable: "));
    CHECK(gone.fd_count == -1);
}

TEST_CASE("incident: the report holds what happened, within its cap", "[unit][incident]") {
    const Incident in = sample("20261130T201500Z-4242", 4242);
    const std::string r = render_incident(in, IncidentStore::kReportCap);
    CHECK_THAT(r, StartsWith("vigil incident 20261130T201500Z-4242\nkind: hang\n"));
    CHECK_THAT(r, Contains("pid: 4242\n"));
    CHECK_THAT(r, Contains("reason: 3 health checks failed"));
    CHECK_THAT(r, Contains("exit: killed by SIGKILL\n"));
    CHECK_THAT(r, Contains("deadline exceeded (3s)  took 3s"));
    CHECK_THAT(r, Contains("SERVING  took 2ms"));
    CHECK_THAT(r, Contains("open fds: "));
    CHECK_THAT(r, Contains("/proc/PID/status:\n    Name:"));
    CHECK_THAT(r, Contains("/proc/PID/limits:\n"));
    CHECK_THAT(r, Contains("    stderr: goroutine 1 [running]:\n"));

    // A flood of output is cut to the cap, keeping its end and the head.
    Incident big = in;
    big.output.assign(10'000, std::string(100, 'x'));
    big.output.push_back("stderr: the last line");
    const std::string cut = render_incident(big, 64 * 1024);
    CHECK(cut.size() <= 64 * 1024);
    CHECK_THAT(cut, StartsWith("vigil incident 20261130T201500Z-4242\n"));
    CHECK_THAT(cut, Contains("output (cut to its last "));
    CHECK_THAT(cut, Contains("stderr: the last line"));
}

TEST_CASE("incident: the store keeps the newest, finds them again, refuses odd ids",
          "[unit][incident]") {
    TmpDir dir;
    const std::string d = dir.path + "/incidents";
    {
        IncidentStore s;
        s.configure(d, 2);
        REQUIRE(s.enabled());
        CHECK(s.list().empty());
        for (const char* id : {"20261130T201500Z-1", "20261130T201501Z-2", "20261130T201502Z-3"}) {
            auto w = s.write(sample(id, 1));
            REQUIRE(w);
            CHECK(*w == id);
        }
        REQUIRE(s.list().size() == 2);
        CHECK(s.list().front().id == "20261130T201502Z-3");
        CHECK(s.list().front().kind == "hang");
        CHECK_FALSE(std::filesystem::exists(d + "/incident-20261130T201500Z-1.txt"));
        auto text = s.read("20261130T201501Z-2");
        REQUIRE(text);
        CHECK_THAT(*text, StartsWith("vigil incident 20261130T201501Z-2\n"));
        const auto perms =
            std::filesystem::status(d + "/incident-20261130T201501Z-2.txt").permissions() &
            std::filesystem::perms::all;
        CHECK(perms == (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
        CHECK_FALSE(s.read("20261130T201500Z-1"));
        CHECK_FALSE(s.read("../../etc/passwd"));
        CHECK_FALSE(s.read(""));
    }
    // A new vigild finds them (heads only), newest first; a smaller keep prunes.
    IncidentStore again;
    again.configure(d, 1);
    REQUIRE(again.list().size() == 1);
    CHECK(again.list().front().id == "20261130T201502Z-3");
    CHECK_THAT(again.list().front().reason, Contains("3 health checks failed"));
    CHECK_FALSE(std::filesystem::exists(d + "/incident-20261130T201501Z-2.txt"));

    IncidentStore off;
    off.configure("", 20);
    CHECK_FALSE(off.enabled());
    CHECK_FALSE(off.write(sample("20261130T201500Z-1", 1)));
}
