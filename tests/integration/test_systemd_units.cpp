// The unit files pass `systemd-analyze verify` without a single warning, and keep the
// settings DESIGN.md's systemd section depends on.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

using namespace vt;

namespace {

std::string source_dir() {
    return VIGIL_SOURCE_DIR; // from CMake: a package build maps __FILE__ to relative paths
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
        s.replace(p, from.size(), to);
    return s;
}

// systemd-analyze verify checks that ExecStart exists, so the copy points at the vigild
// just built instead of the installed path.
std::string verify(const TempDir& dir, const std::string& unit, const std::string& as) {
    const std::string text = read_file(source_dir() + "/systemd/" + unit);
    REQUIRE_FALSE(text.empty());
    write_file(dir / unit, replace_all(text, "/usr/local/sbin/vigild", VIGILD_PATH));
    Process p({"/usr/bin/systemd-analyze", "verify", dir / as}, dir / (unit + ".out"));
    auto code = p.wait_exit(60s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    return p.output();
}

} // namespace

TEST_CASE("systemd units pass systemd-analyze verify", "[e2e][systemd]") {
    if (::access("/usr/bin/systemd-analyze", X_OK) != 0) {
        WARN("SKIPPED: systemd-analyze is not installed (apt-get install systemd); the unit "
             "files were not verified");
        return;
    }
    TempDir dir;
    CHECK(verify(dir, "vigild.service", "vigild.service") == "");
    CHECK(verify(dir, "vigild@.service", "vigild@demo.service") == "");

    for (const char* unit : {"vigild.service", "vigild@.service"}) {
        const std::string text = read_file(source_dir() + "/systemd/" + unit);
        INFO(unit);
        for (const char* key :
             {"Type=notify", "KillMode=process", "Restart=always",
              "RuntimeDirectoryPreserve=restart", "OOMScoreAdjust=-500",
              "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "TimeoutStopSec=30s",
              "StateDirectory=vigil", "RuntimeDirectory=vigil"})
            CHECK(text.find(key) != std::string::npos);
    }
}
