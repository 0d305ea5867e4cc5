#include "vigil/fs_util.hpp"
#include "vigil/process.hpp"
#include "vigil/state_record.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <sys/stat.h>
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
    ProcessIdentity id{1234, 987654321, "0f4c-boot", "/usr/bin/containerd"};
    auto text = format_state_record(id);
    CHECK(text == "pid=1234\nstart_time=987654321\nboot_id=0f4c-boot\nexe=/usr/bin/containerd\n");
    auto back = parse_state_record(text);
    REQUIRE(back.ok());
    CHECK(*back == id);

    struct Row {
        const char* text;
        const char* error;
    };
    const Row bad[] = {
        {"", "incomplete record"},
        {"pid=12\nstart_time=3\nboot_id=x\n", "incomplete record"},
        {"pid=abc\nstart_time=3\nboot_id=x\nexe=/x\n", "line 1: bad pid 'abc'"},
        {"pid=-5\nstart_time=3\nboot_id=x\nexe=/x\n", "bad pid"},
        {"pid=5\nstart_time=3x\nboot_id=x\nexe=/x\n", "line 2: bad start_time"},
        {"pid=5\nstart_time=3\nboot_id=x\nexe=/x\ncolour=blue\n", "unknown key 'colour'"},
        {"garbage\n", "expected key=value"},
    };
    for (const auto& r : bad) {
        INFO(r.text);
        auto p = parse_state_record(r.text);
        REQUIRE_FALSE(p.ok());
        CHECK(p.error().message().find(r.error) != std::string::npos);
    }
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
    std::string why;
    CHECK_FALSE(find_adoptable_child(dir.path, why));
    CHECK(why.find("no child record") != std::string::npos);

    REQUIRE(write_child_records(dir.path, *me).ok());
    CHECK(std::filesystem::exists(dir.path + "/child.pid"));
    auto found = find_adoptable_child(dir.path, why);
    REQUIRE(found);
    CHECK(found->identity == *me);
    CHECK(found->pidfd.valid());

    auto wrong = *me;
    wrong.start_time += 1;
    REQUIRE(write_child_records(dir.path, wrong).ok());
    CHECK_FALSE(find_adoptable_child(dir.path, why));
    CHECK(why.find("was reused") != std::string::npos);

    remove_child_records(dir.path);
    CHECK_FALSE(std::filesystem::exists(dir.path + "/child.pid"));
    CHECK_FALSE(std::filesystem::exists(dir.path + "/child.state"));
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
