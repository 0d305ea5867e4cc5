// A child killed by the kernel's OOM killer is reported as such, without cgroups in vigild:
// the test alone puts the child in a cgroup v1 memory group with a small limit.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace vt;

namespace {

constexpr const char* kMemoryRoot = "/sys/fs/cgroup/memory";

// A memory cgroup (v1) with a limit, removed at the end (once its tasks are gone).
struct MemoryGroup {
    std::string path;
    explicit MemoryGroup(std::size_t limit_bytes)
        : path(std::string(kMemoryRoot) + "/vigil-test-" + std::to_string(::getpid())) {
        std::filesystem::create_directory(path);
        std::ofstream(path + "/memory.limit_in_bytes") << limit_bytes;
    }
    ~MemoryGroup() {
        // The killed child is gone by the time vigild reported it; retry briefly anyway.
        wait_until([&] { return ::rmdir(path.c_str()) == 0 || errno == ENOENT; });
    }
};

bool memory_cgroup_v1_writable() {
    return ::access((std::string(kMemoryRoot) + "/cgroup.procs").c_str(), W_OK) == 0;
}

} // namespace

TEST_CASE("an OOM kill is named as such, a plain SIGKILL is not", "[e2e][oom_kill]") {
    if (!memory_cgroup_v1_writable()) {
        // The kill needs a memory limit to hit; vigild itself needs no cgroup.
        WARN("no writable cgroup v1 memory controller at " << kMemoryRoot
                                                           << ": the OOM kill is not tried here");
        return;
    }
    become_subreaper();
    TempDir dir;
    MemoryGroup group(32u << 20);
    Vigild v(dir, fake_child_table({"--hog-in-cgroup", group.path}, "oom_score_adj = 700\n") +
                      "[restart]\npolicy = \"never\"\n[health]\nkind = \"none\"\n");
    REQUIRE(v.wait_log("killed by the kernel's OOM killer"));
    REQUIRE(v.wait_log("exited: killed by the OOM killer (memory cgroup limit), anon-rss "));
    CHECK(v.log().find("oom_score_adj 700") != std::string::npos);
    const std::string status = run_vigilctl(dir, {"status"}).out;
    CHECK(status.find("killed by the OOM killer") != std::string::npos);
    const std::string json = run_vigilctl(dir, {"--json", "status"}).out;
    CHECK(json.find("\"oom_killed\":true") != std::string::npos);
    CHECK(json.find("\"oom_score_adj\":700") != std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}

TEST_CASE("a SIGKILL from someone else is a plain SIGKILL", "[e2e][oom_kill]") {
    become_subreaper();
    TempDir dir;
    Vigild v(dir,
             fake_child_table({}) + "[restart]\npolicy = \"never\"\n[health]\nkind = \"none\"\n");
    const auto pid = v.wait_child_pid();
    REQUIRE(pid);
    REQUIRE(v.wait_log("-> running"));
    REQUIRE(::kill(*pid, SIGKILL) == 0);
    REQUIRE(v.wait_log("exited: killed by SIGKILL"));
    const std::string json = run_vigilctl(dir, {"--json", "status"}).out;
    CHECK(json.find("\"oom_killed\":false") != std::string::npos);
    CHECK(v.log().find("OOM killer") == std::string::npos);
    v.process().signal(SIGTERM);
    REQUIRE(v.process().wait_exit() == 0);
}
