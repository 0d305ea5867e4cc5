// The kernel's record of an OOM kill, read from /dev/kmsg (issue 11, item 4).
#include "vigil/oom_kill.hpp"
#include "vigil/restart_policy.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

using namespace vigil;

namespace {

// Real records, as a 6.1 kernel wrote them (the memcg one was read off this machine).
constexpr const char* kMemcgRecord =
    "3,432,10609470620,-;Memory cgroup out of memory: Killed process 27800 (python3) "
    "total-vm:26844kB, anon-rss:16128kB, file-rss:6576kB, shmem-rss:0kB, UID:0 "
    "pgtables:92kB oom_score_adj:0\n";
constexpr const char* kGlobalRecord =
    "3,1201,98765432,-;Out of memory: Killed process 4242 (containerd) total-vm:2403456kB, "
    "anon-rss:1258291kB, file-rss:40960kB, shmem-rss:0kB, UID:0 pgtables:3120kB "
    "oom_score_adj:500\n SUBSYSTEM=memory\n";

} // namespace

TEST_CASE("oom kill: the kernel's record is parsed", "[unit][oom_kill]") {
    auto memcg = parse_oom_kill_record(kMemcgRecord);
    REQUIRE(memcg);
    CHECK(memcg->pid == 27800);
    CHECK(memcg->comm == "python3");
    CHECK(memcg->anon_rss_kb == 16128);
    CHECK(memcg->total_vm_kb == 26844);
    CHECK(memcg->oom_score_adj == 0);
    CHECK(memcg->memcg);

    auto global = parse_oom_kill_record(kGlobalRecord);
    REQUIRE(global);
    CHECK(global->pid == 4242);
    CHECK(global->comm == "containerd");
    CHECK(global->anon_rss_kb == 1258291);
    CHECK(global->oom_score_adj == 500);
    CHECK_FALSE(global->memcg);

    // A task name may hold ") " itself: the name ends at the ")" before total-vm.
    auto odd = parse_oom_kill_record("Out of memory: Killed process 7 (a) b) total-vm:1kB, "
                                     "anon-rss:2kB, file-rss:0kB, shmem-rss:0kB, UID:0 "
                                     "pgtables:0kB oom_score_adj:-17");
    REQUIRE(odd);
    CHECK(odd->comm == "a) b");
    CHECK(odd->oom_score_adj == -17);

    // Not kills, or damaged: nothing.
    for (const char* other :
         {"6,1,2,-;oom_reaper: reaped process 27800 (python3), now anon-rss:0kB",
          "4,5,6,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0",
          "6,7,8,-;Killed process 5 (x) total-vm:1kB, anon-rss:2kB oom_score_adj:0",
          "3,9,9,-;Out of memory: Killed process abc (x) total-vm:1kB, anon-rss:2kB, "
          "oom_score_adj:0",
          "3,9,9,-;Out of memory: Killed process 12 (x) total-vm:1kB, oom_score_adj:0",
          "3,9,9,-;Out of memory: Killed process 12 (x total-vm:1kB, anon-rss:2kB, "
          "oom_score_adj:0",
          "", ";", "Out of memory: Killed process "}) {
        INFO(other);
        CHECK_FALSE(parse_oom_kill_record(other));
    }
}

TEST_CASE("oom kill: sizes are printed for people", "[unit][oom_kill]") {
    CHECK(format_kib(900) == "900 KiB");
    CHECK(format_kib(16128) == "15.8 MiB");
    CHECK(format_kib(1258291) == "1.2 GiB");
}

TEST_CASE("oom kill: the exit says so", "[unit][oom_kill]") {
    ExitStatus st{ExitStatus::Kind::signaled, SIGKILL};
    CHECK(describe(st) == "killed by SIGKILL");
    st.oom_kill = parse_oom_kill_record(kGlobalRecord);
    CHECK(describe(st) == "killed by the OOM killer, anon-rss 1.2 GiB, oom_score_adj 500");
    st.oom_kill = parse_oom_kill_record(kMemcgRecord);
    CHECK(describe(st) ==
          "killed by the OOM killer (memory cgroup limit), anon-rss 15.8 MiB, oom_score_adj 0");
}

TEST_CASE("oom kill: the watcher reads what is there, never waits, and keeps the last kills",
          "[unit][oom_kill]") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd writer(sv[1]);
    KmsgOomWatcher w;
    w.adopt(UniqueFd(sv[0]));
    auto send = [&](const std::string& rec) {
        REQUIRE(::write(writer.get(), rec.data(), rec.size()) == static_cast<ssize_t>(rec.size()));
    };
    CHECK_FALSE(w.take(4242)); // nothing logged: at once, no wait
    send("6,1,1,-;eth0: link up\n");
    send(kGlobalRecord);
    send(kMemcgRecord);
    auto k = w.take(4242);
    REQUIRE(k);
    CHECK(k->comm == "containerd");
    CHECK_FALSE(w.take(4242)); // handed over once
    CHECK(w.take(27800));
    // More kills than it keeps: the oldest are forgotten.
    for (int pid = 1000; pid < 1000 + static_cast<int>(KmsgOomWatcher::kKeep) + 4; ++pid)
        send("3,2,2,-;Out of memory: Killed process " + std::to_string(pid) +
             " (x) total-vm:1kB, anon-rss:2kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB "
             "oom_score_adj:0\n");
    CHECK(w.take(1000 + KmsgOomWatcher::kKeep + 3));
    CHECK_FALSE(w.take(1000));
    CHECK(w.take(1004));
}
