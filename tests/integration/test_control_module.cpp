// The control API's module (vigil-control.so, control_module.hpp): vigild checks it before
// anything starts, loads it after the first spawn, and refuses one from another build; and
// the vigild executable's link carries gRPC only where the health prober still needs it.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>

using namespace vt;

namespace {

const std::string kNoHealth = "[health]\nkind = \"none\"\n";
constexpr int kExitSoftware = 70;

// The output of a short command (its exit must be 0).
std::string run(const TempDir& dir, const std::vector<std::string>& argv, const std::string& name) {
    Process p(argv, dir / name);
    REQUIRE(p.wait_exit() == 0);
    return p.output();
}

} // namespace

TEST_CASE("control module: a missing module exits 70 naming its path, before any spawn",
          "[e2e][module]") {
    become_subreaper();
    TempDir dir;
    const std::string missing = dir / "vigil-control.so";
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth, {},
             {{"VIGIL_CONTROL_MODULE", missing}});
    REQUIRE(v.process().wait_exit() == kExitSoftware);
    CHECK(v.log().find("the control module " + missing + " is missing") != std::string::npos);
    CHECK(v.log().find("reinstall vigil") != std::string::npos);
    CHECK(v.log().find("spawned pid") == std::string::npos);
    CHECK_FALSE(file_exists(dir / "stamps")); // the child never ran
    CHECK_FALSE(file_exists(v.state_dir() + "/vigild.sock"));
}

TEST_CASE("control module: one that group or others can write exits 70 before any spawn",
          "[e2e][module]") {
    become_subreaper();
    TempDir dir;
    const std::string copy = dir / "vigil-control.so";
    std::filesystem::copy_file(VIGIL_CONTROL_MODULE_PATH, copy);
    REQUIRE(::chmod(copy.c_str(), 0666) == 0);
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth, {},
             {{"VIGIL_CONTROL_MODULE", copy}});
    REQUIRE(v.process().wait_exit() == kExitSoftware);
    CHECK(v.log().find("the control module " + copy + " has mode 0666") != std::string::npos);
    CHECK(v.log().find("spawned pid") == std::string::npos);
    CHECK_FALSE(file_exists(dir / "stamps"));

    // The same file, closed to writes, is served from.
    REQUIRE(::chmod(copy.c_str(), 0644) == 0);
    Vigild ok(dir, "", {}, {{"VIGIL_CONTROL_MODULE", copy}}, "vigild2.log");
    REQUIRE(ok.wait_log("control API listening on"));
    CHECK(run_vigilctl(dir, {"status"}).code == 0);
    ok.process().signal(SIGTERM);
    REQUIRE(ok.process().wait_exit() == 0);
}

TEST_CASE("control module: one from another build exits 70 before any spawn", "[e2e][module]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth, {},
             {{"VIGIL_CONTROL_MODULE", FAKE_MODULE_OTHER_BUILD}});
    REQUIRE(v.process().wait_exit() == kExitSoftware);
    const std::string log = v.log();
    CHECK(log.find(std::string("the control module ") + FAKE_MODULE_OTHER_BUILD +
                   " is from another build (vigil 0.0.0 abi 0") != std::string::npos);
    CHECK(log.find("reinstall vigil") != std::string::npos);
    CHECK(log.find("spawned pid") == std::string::npos);
    CHECK_FALSE(file_exists(dir / "stamps"));
}

TEST_CASE("control module: an upgrade that left the old module leaves the child running",
          "[e2e][module]") {
    become_subreaper();
    TempDir dir;
    const std::string body = fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth;
    pid_t child = 0;
    {
        Vigild first(dir, body, {}, {}, "first.log");
        REQUIRE(first.wait_log("-> running"));
        auto pid = first.wait_child_pid();
        REQUIRE(pid);
        child = *pid;
        first.process().signal(SIGUSR2);
        REQUIRE(first.process().wait_exit() == 0);
    }
    REQUIRE(process_alive(child));
    // The new vigild with a module of another build: refused before the adoption.
    Vigild second(dir, "", {}, {{"VIGIL_CONTROL_MODULE", FAKE_MODULE_OTHER_BUILD}}, "second.log");
    REQUIRE(second.process().wait_exit() == kExitSoftware);
    CHECK(second.log().find("is from another build") != std::string::npos);
    CHECK(process_alive(child));
    // Reinstalled (the right module): the child is adopted, not restarted.
    Vigild third(dir, "", {}, {}, "third.log");
    REQUIRE(third.wait_log("adopted pid " + std::to_string(child)));
    third.process().signal(SIGTERM);
    REQUIRE(third.process().wait_exit() == 0);
    REQUIRE(wait_until([&] {
        reap_children();
        return !process_alive(child);
    }));
}

TEST_CASE("control module: one that fails to load after the spawn stops the child; vigild "
          "exits 70",
          "[e2e][module]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir, fake_child_table({"--stamp-file", dir / "stamps"}) + kNoHealth, {},
             {{"VIGIL_CONTROL_MODULE", FAKE_MODULE_NO_FACTORY}});
    REQUIRE(v.process().wait_exit() == kExitSoftware);
    const std::string log = v.log();
    CHECK(log.find("spawned pid") != std::string::npos);
    CHECK(log.find(std::string(FAKE_MODULE_NO_FACTORY) +
                   " is not vigil's control module (no vigil_control_build or "
                   "vigil_control_create); reinstall vigil") != std::string::npos);
    CHECK(log.find("control API listening on") == std::string::npos);
    CHECK(log.find("-> stopped") != std::string::npos); // the child was stopped, not left
    CHECK(log.find("vigild exits 70") != std::string::npos);
    // The socket listened on before the spawn is removed.
    CHECK_FALSE(file_exists(v.state_dir() + "/vigild.sock"));
}

// vigild's executable needs gRPC and protobuf only for what vigil_core still does with them:
// the gRPC health prober (health.cpp), until it is rewritten without gRPC. Then the allowed
// list below empties and the test demands that vigild's NEEDED entries name neither.
TEST_CASE("control module: vigild's executable links no gRPC or protobuf; the module does",
          "[e2e][module]") {
    TempDir dir;
    // No object of vigil_core refers to a gRPC, gpr or protobuf symbol (the gRPC health
    // check speaks HTTP/2 through libnghttp2; the control API is the module's).
    const std::string nm =
        run(dir, {"/usr/bin/nm", "-A", "-C", "--undefined-only", VIGIL_CORE_ARCHIVE}, "nm.out");
    const std::regex grpc_symbol(R"(^[^:]*:([^:]+\.o):\s+U (grpc|gpr_|google::protobuf))");
    std::set<std::string> users;
    std::istringstream lines(nm);
    for (std::string line; std::getline(lines, line);)
        if (std::smatch m; std::regex_search(line, m, grpc_symbol))
            users.insert(m[1]);
    for (const auto& u : users) {
        INFO("vigil_core object that uses gRPC or protobuf: " << u);
        CHECK(false);
    }
    const std::string dynamic = run(dir, {"/usr/bin/readelf", "-d", VIGILD_PATH}, "readelf.out");
    INFO(dynamic);
    CHECK(dynamic.find("(NEEDED)") != std::string::npos); // the output is what we think it is
    CHECK_FALSE(std::regex_search(dynamic, std::regex(R"(NEEDED.*\[lib(grpc|gpr|protobuf|absl))")));
    // The module is what carries them.
    const std::string module =
        run(dir, {"/usr/bin/readelf", "-d", VIGIL_CONTROL_MODULE_PATH}, "readelf-module.out");
    CHECK(std::regex_search(module, std::regex(R"(NEEDED.*\[libgrpc\+\+)")));
}
