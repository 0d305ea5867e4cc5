#include "vigil/fs_util.hpp"
#include "vigil/operator_hold.hpp"
#include "vigil/process.hpp"
#include "vigil/state_record.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

using namespace vigil;

namespace {

struct TmpDir {
    std::string path;
    TmpDir() {
        char t[] = "/tmp/vigil-unit.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TmpDir() { std::filesystem::remove_all(path); }
};

} // namespace

TEST_CASE("state record round-trips and rejects garbage", "[unit]") {
    const std::string token(32, 'a');
    ChildRecord rec{
        "/run/vigil", {1234, 987654321, "0f4c-boot", "/usr/bin/containerd", 65534}, token};
    auto text = format_state_record(rec);
    CHECK(text == "instance=/run/vigil\npid=1234\nstart_time=987654321\nboot_id=0f4c-boot\n"
                  "exe=/usr/bin/containerd\nuid=65534\ntoken=" +
                      token + "\n");
    auto back = parse_state_record(text);
    REQUIRE(back.ok());
    CHECK(*back == rec);
    rec.token.clear(); // an adopted child whose token is unknown
    REQUIRE(parse_state_record(format_state_record(rec)).ok());
    CHECK(*parse_state_record(format_state_record(rec)) == rec);

    const std::string ok_tail = "boot_id=x\nexe=/x\nuid=0\ntoken=none\n";
    struct Row {
        std::string text;
        const char* error;
    };
    const Row bad[] = {
        {"", "incomplete record (missing instance, pid"},
        {"instance=/s\npid=12\nstart_time=3\nboot_id=x\nuid=0\ntoken=none\n", "missing exe"},
        {"pid=12\nstart_time=3\n" + ok_tail, "missing instance"}, // a v0.1 record
        {"instance=/s\npid=abc\nstart_time=3\n" + ok_tail, "bad pid 'abc'"},
        {"instance=/s\npid=-5\nstart_time=3\n" + ok_tail, "bad pid"},
        {"instance=/s\npid=5\nstart_time=3x\n" + ok_tail, "bad start_time"},
        {"instance=/s\npid=5\nstart_time=3\n" + ok_tail + "colour=blue\n", "unknown key 'colour'"},
        {"instance=/s\npid=5\npid=6\nstart_time=3\n" + ok_tail, "'pid' given twice"},
        {"instance=\npid=5\nstart_time=3\n" + ok_tail, "empty instance"},
        {"instance=/s\npid=5\nstart_time=3\nboot_id=x\nexe=/x\nuid=0\ntoken=abc\n", "bad token"},
        {"instance=/s\npid=5\nstart_time=3\nboot_id=x\nexe=/x\nuid=-1\ntoken=none\n", "bad uid"},
        {"garbage\n", "expected key=value"},
    };
    for (const auto& r : bad) {
        INFO(r.text);
        auto p = parse_state_record(r.text);
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().message().find(r.error) != std::string::npos);
    }
}

TEST_CASE("next-spawn record round-trips; tokens are 128 random bits", "[unit]") {
    NextSpawn n{"/run/vigil", "boot", new_spawn_token(), "/usr/bin/containerd"};
    CHECK(n.token.size() == 32);
    CHECK(n.token.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(new_spawn_token() != n.token);
    auto back = parse_next_spawn(format_next_spawn(n));
    REQUIRE(back.ok());
    CHECK(*back == n);
    CHECK_FALSE(parse_next_spawn("instance=/s\nboot_id=b\ntoken=xyz\nbinary=/b\n").ok());
    CHECK_FALSE(parse_next_spawn("instance=/s\nboot_id=b\nbinary=/b\n").ok());
}

TEST_CASE("identity_mismatch tells a reused pid from the same process", "[unit]") {
    ProcessIdentity rec{42, 1000, "boot-a", "/usr/bin/containerd"};
    CHECK(identity_mismatch(rec, rec).empty());
    auto other = rec;
    other.start_time = 2000;
    CHECK(identity_mismatch(rec, other).find("was reused") != std::string::npos);
    other = rec;
    other.boot_id = "boot-b";
    CHECK(identity_mismatch(rec, other).find("another boot") != std::string::npos);
    other = rec;
    other.exe = "/usr/bin/sleep";
    CHECK(identity_mismatch(rec, other).find("runs /usr/bin/sleep") != std::string::npos);
    other = rec;
    other.uid = 65534;
    CHECK(identity_mismatch(rec, other).find("runs as uid 65534") != std::string::npos);
    other = rec;
    other.exe = "/usr/bin/containerd (deleted)"; // upgraded on disk since: still ours
    CHECK(identity_mismatch(rec, other).empty());
}

TEST_CASE("read_identity describes this process and find_adoptable_child proves it", "[unit]") {
    auto me = read_identity(::getpid());
    REQUIRE(me.ok());
    CHECK(me->pid == ::getpid());
    CHECK(me->start_time > 0);
    CHECK(me->boot_id.size() == 36);
    CHECK(me->exe == std::filesystem::read_symlink("/proc/self/exe").string());

    TmpDir dir;
    const std::string inst = dir.path;
    std::string why;
    CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
    CHECK(why.find("no child record") != std::string::npos);
    CHECK(why.find("no next-spawn record") != std::string::npos);

    REQUIRE(write_child_records(dir.path, ChildRecord{inst, *me, ""}).ok());
    CHECK(std::filesystem::exists(dir.path + "/child.pid"));
    auto found = find_adoptable_child(dir.path, inst, why);
    REQUIRE(found);
    CHECK(found->record.identity == *me);
    CHECK_FALSE(found->by_token);
    CHECK(found->pidfd.valid());

    SECTION("another instance's record is not ours") {
        CHECK_FALSE(find_adoptable_child(dir.path, "/run/vigil-other", why));
        CHECK(why.find("belongs to instance") != std::string::npos);
    }
    SECTION("a reused pid") {
        auto wrong = *me;
        wrong.start_time += 1;
        REQUIRE(write_child_records(dir.path, ChildRecord{inst, wrong, ""}).ok());
        CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
        CHECK(why.find("was reused") != std::string::npos);
    }
    SECTION("a record vigild could not have written is never believed") {
        const std::string rec = dir.path + "/child.state";
        SECTION("writable by others") {
            REQUIRE(::chmod(rec.c_str(), 0666) == 0);
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("mode 0666") != std::string::npos);
        }
        SECTION("owned by another uid") {
            REQUIRE(::chown(rec.c_str(), 65534, 65534) == 0);
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("owned by uid 65534") != std::string::npos);
        }
        SECTION("hard-linked (another instance's file)") {
            REQUIRE(::link(rec.c_str(), (dir.path + "/elsewhere").c_str()) == 0);
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("2 hard links") != std::string::npos);
        }
        SECTION("a FIFO does not block and is refused") {
            std::filesystem::remove(rec);
            REQUIRE(::mkfifo(rec.c_str(), 0600) == 0);
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("not a regular file") != std::string::npos);
        }
        SECTION("a character device is refused, not read without bound") {
            std::filesystem::remove(rec);
            REQUIRE(::mknod(rec.c_str(), S_IFCHR | 0600, ::makedev(1, 5)) == 0); // /dev/zero
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("not a regular file") != std::string::npos);
        }
        SECTION("a huge file is refused") {
            std::filesystem::resize_file(rec, kMaxRecordBytes + 1);
            CHECK_FALSE(find_adoptable_child(dir.path, inst, why));
            CHECK(why.find("larger than") != std::string::npos);
        }
    }
    SECTION("the next-spawn token finds a process whose record was never written") {
        remove_child_records(dir.path);
        // This test process plays the child: give it a token in its environment.
        const std::string token = new_spawn_token();
        REQUIRE(write_next_spawn(dir.path, NextSpawn{inst, me->boot_id, token, me->exe}).ok());
        CHECK_FALSE(find_adoptable_child(dir.path, inst, why)); // nobody carries it yet
        CHECK(why.find("no process carries") != std::string::npos);
    }
    remove_child_records(dir.path);
    CHECK_FALSE(std::filesystem::exists(dir.path + "/child.pid"));
    CHECK_FALSE(std::filesystem::exists(dir.path + "/child.state"));
}

TEST_CASE("read_file_nofollow is bounded and never blocks on a FIFO", "[unit]") {
    TmpDir dir;
    const std::string fifo = dir.path + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto r = read_file_nofollow(fifo); // O_NONBLOCK: no writer, returns at once
    CHECK(r.ok());
    auto zero = read_file_nofollow("/dev/zero", 4096);
    REQUIRE_FALSE(zero.ok());
    CHECK(zero.error().message().find("larger than 4096 bytes") != std::string::npos);
}

TEST_CASE("check_private_dir: owned by vigild and closed to writes by others", "[unit]") {
    TmpDir dir;
    const std::string p = dir.path + "/state";
    REQUIRE(ensure_dir(p, 0700).ok());
    CHECK(check_private_dir(p).ok());
    REQUIRE(::chmod(p.c_str(), 0755) == 0);
    CHECK(check_private_dir(p).ok()); // readable is a warning at most, not a forgery risk
    for (mode_t m : {0777, 01777, 0770, 0702}) {
        REQUIRE(::chmod(p.c_str(), m) == 0);
        auto st = check_private_dir(p);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().message().find("group or others can write") != std::string::npos);
    }
    REQUIRE(::chmod(p.c_str(), 0700) == 0);
    REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
    auto owned = check_private_dir(p);
    REQUIRE_FALSE(owned.ok());
    CHECK(owned.error().message().find("owned by uid 65534") != std::string::npos);
    REQUIRE(::symlink(p.c_str(), (dir.path + "/link").c_str()) == 0);
    CHECK_FALSE(check_private_dir(dir.path + "/link").ok());
}

TEST_CASE("atomic_write_file writes the mode and replaces a symlink without following it",
          "[unit]") {
    TmpDir dir;
    const std::string victim = dir.path + "/victim";
    REQUIRE(atomic_write_file(dir.path, "victim", "untouched", 0644).ok());
    REQUIRE(::symlink(victim.c_str(), (dir.path + "/conf").c_str()) == 0);
    REQUIRE(atomic_write_file(dir.path, "conf", "secret", 0600).ok());
    struct stat st;
    REQUIRE(::lstat((dir.path + "/conf").c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(*read_file_nofollow(dir.path + "/conf") == "secret");
    CHECK(*read_file_nofollow(victim) == "untouched");
    // No temp file is left behind.
    int entries = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path)) {
        (void)e;
        ++entries;
    }
    CHECK(entries == 2);
    CHECK_FALSE(atomic_write_file(dir.path + "/missing", "x", "y", 0600).ok());
}

TEST_CASE("the state-dir lock is exclusive and names its holder", "[unit]") {
    TmpDir dir;
    StateDirLock a, b;
    CHECK(a.acquire(dir.path).outcome == StateDirLock::Outcome::acquired);
    auto second = b.acquire(dir.path);
    CHECK(second.outcome == StateDirLock::Outcome::held_by_other);
    CHECK(second.message.find("pid " + std::to_string(::getpid())) != std::string::npos);
}

TEST_CASE("ensure_dir creates parents and sets the mode", "[unit]") {
    TmpDir dir;
    const std::string p = dir.path + "/a/b/state";
    REQUIRE(ensure_dir(p, 0700).ok());
    struct stat st;
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    REQUIRE(ensure_dir(p, 0700).ok());
    // An existing dir keeps its mode (it may be the operator's, like /var/lib).
    REQUIRE(::chmod(p.c_str(), 0755) == 0);
    REQUIRE(ensure_dir(p, 0700).ok());
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0755);
    // Parents may be symlinks (/var/run -> /run); the dir itself may not.
    REQUIRE(::symlink((dir.path + "/a").c_str(), (dir.path + "/link").c_str()) == 0);
    CHECK(ensure_dir(dir.path + "/link/b/new", 0700).ok());
    CHECK(std::filesystem::is_directory(dir.path + "/a/b/new"));
    auto l = ensure_dir(dir.path + "/link", 0700);
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().message().find("is a symlink") != std::string::npos);
    REQUIRE(atomic_write_file(dir.path, "file", "x", 0600).ok());
    auto r = ensure_dir(dir.path + "/file", 0700);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("not a directory") != std::string::npos);
}

TEST_CASE("the operator's hold round-trips; times beyond system_clock are refused", "[unit]") {
    OperatorHold h;
    h.since = OperatorHold::Time(std::chrono::milliseconds(1'700'000'000'000));
    h.until = h.since + std::chrono::hours(2);
    h.reason = "disk replacement";
    auto back = parse_hold(format_hold(h));
    REQUIRE(back.ok());
    CHECK(*back == h);
    h.until.reset();
    REQUIRE(parse_hold(format_hold(h)).ok());
    CHECK_FALSE(parse_hold(format_hold(h)).value().until.has_value());
    // Found by fuzz_state_record: 17000060000000 ms overflowed the nanosecond clock.
    CHECK_FALSE(parse_hold("since=17000060000000\nuntil=none\nreason=x\n").ok());
    CHECK_FALSE(parse_hold("since=-5\nuntil=none\nreason=x\n").ok());
    CHECK_FALSE(parse_hold("since=5\nuntil=none\n").ok());
    CHECK_FALSE(parse_hold("since=5\nsince=6\nuntil=none\nreason=\n").ok());
    CHECK(parse_hold("since=5\nuntil=none\nreason=\n").ok());
}
