#include "vigil/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

namespace vigil {

std::optional<LogLevel> parse_log_level(std::string_view s) {
    if (s == "trace")
        return LogLevel::trace;
    if (s == "debug")
        return LogLevel::debug;
    if (s == "info")
        return LogLevel::info;
    if (s == "warn")
        return LogLevel::warn;
    if (s == "error")
        return LogLevel::error;
    return std::nullopt;
}

std::string_view to_string(LogLevel level) {
    switch (level) {
    case LogLevel::trace:
        return "trace";
    case LogLevel::debug:
        return "debug";
    case LogLevel::info:
        return "info";
    case LogLevel::warn:
        return "warn";
    case LogLevel::error:
        return "error";
    }
    return "info";
}

namespace log {
namespace {

std::atomic<LogLevel> g_level{LogLevel::info};
std::atomic<bool> g_journal{false};

// syslog priorities: journald turns "<N>" at the start of a line into PRIORITY=N.
int syslog_priority(LogLevel level) {
    switch (level) {
    case LogLevel::trace:
    case LogLevel::debug:
        return 7;
    case LogLevel::info:
        return 6;
    case LogLevel::warn:
        return 4;
    case LogLevel::error:
        return 3;
    }
    return 6;
}

} // namespace

void init(LogLevel level) {
    g_level = level;
    // JOURNAL_STREAM=DEV:INODE names the stream journald gave us; it only counts if stderr
    // is still that stream (a shell started from a unit inherits the variable).
    g_journal = false;
    if (const char* js = std::getenv("JOURNAL_STREAM")) {
        unsigned long long dev = 0, ino = 0;
        struct stat st;
        if (std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && ::fstat(STDERR_FILENO, &st) == 0)
            g_journal = static_cast<unsigned long long>(st.st_dev) == dev &&
                        static_cast<unsigned long long>(st.st_ino) == ino;
    }
}

void set_level(LogLevel level) {
    g_level = level;
}
LogLevel level() {
    return g_level;
}
bool enabled(LogLevel level) {
    return level >= g_level.load();
}

void write(LogLevel level, std::string_view message) {
    std::string line;
    if (g_journal) {
        line = fmt::format("<{}>{}\n", syslog_priority(level), message);
    } else {
        struct timeval tv;
        gettimeofday(&tv, nullptr);
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        line = fmt::format("{}.{:03d} {:<5} {}\n", stamp, static_cast<int>(tv.tv_usec / 1000),
                           to_string(level), message);
    }
    // One write(2) per line, so concurrent writers (gRPC threads) never interleave.
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
}

} // namespace log
} // namespace vigil
