// StateDirLock's message when another vigild holds the lock: the lock file's content is
// shown only if it is a decimal pid (vigild wrote it), never verbatim.
#include "vigil/fs_util.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <sys/file.h>
#include <unistd.h>

using namespace vigil;

namespace {

// Holds the lock as another vigild would (flock on an open file description of its own),
// with `content` in the file.
struct OtherHolder {
    int fd = -1;
    OtherHolder(const std::string& dir, const std::string& content) {
        fd = ::open((dir + "/vigild.lock").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, content.data(), content.size()) ==
                static_cast<ssize_t>(content.size()));
        REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    }
    ~OtherHolder() { ::close(fd); }
};

} // namespace

TEST_CASE("state dir lock: the holder's pid is shown only if the file holds a decimal pid",
          "[unit][lock]") {
    char tmpl[] = "/tmp/vigil-lock-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    struct Row {
        std::string content;
        std::string shown;
    };
    const std::string not_pid = "(its lock file does not hold a decimal pid)";
    for (const auto& row :
         {Row{"4242\n", "another vigild (pid 4242) holds"},
          Row{"1", "another vigild (pid 1) holds"},
          Row{"", "another vigild holds"}, // locked, its pid not yet written
          Row{"\x1b[2J\x1b[31mFAKE\n", "another vigild " + not_pid},
          Row{"12 34\n", "another vigild " + not_pid}, Row{"-5\n", "another vigild " + not_pid},
          Row{"12345678901234\n", "another vigild " + not_pid},
          Row{std::string("77\0x", 4), "another vigild " + not_pid}}) {
        OtherHolder other(dir, row.content);
        StateDirLock lock;
        const auto attempt = lock.acquire(dir);
        INFO("message: " << attempt.message);
        CHECK(attempt.outcome == StateDirLock::Outcome::held_by_other);
        CHECK(attempt.message.rfind(row.shown, 0) == 0);
        CHECK(attempt.message.find('\x1b') == std::string::npos);
        CHECK(attempt.message.find("FAKE") == std::string::npos);
        CHECK_FALSE(lock.held());
    }
    std::filesystem::remove_all(dir);
}
