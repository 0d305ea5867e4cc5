#include "vigil/log.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

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

namespace {

// Writes all of `data` to a blocking fd (or, if someone else made the shared file
// description non-blocking, waits for it with poll). Gives up on any other error: a log
// that cannot be written has nowhere to report that.
void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n >= 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return;
        struct pollfd p {
            fd, POLLOUT, 0
        };
        if (::poll(&p, 1, -1) < 0 && errno != EINTR)
            return;
    }
}

} // namespace

LogWriter::LogWriter(int fd, size_t capacity_bytes,
                     std::function<std::string(std::uint64_t)> drop_line)
    : fd_(fd), capacity_(capacity_bytes), drop_line_(std::move(drop_line)),
      thread_([this] { run(); }) {}

LogWriter::~LogWriter() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

bool LogWriter::push(std::string_view line) {
    bool queued;
    bool was_idle;
    {
        std::lock_guard lock(mu_);
        // The writer sleeps only when it holds no batch and nothing is queued: wake it only
        // then (a busy writer looks at the queue again when its write returns).
        was_idle = !busy_ && queued_.empty() && dropped_ == 0;
        queued = queued_.size() + line.size() <= capacity_;
        if (queued) {
            queued_.append(line);
        } else {
            ++dropped_;
            ++dropped_total_;
        }
    }
    if (was_idle)
        wake_.notify_one();
    return queued;
}

bool LogWriter::flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return idle_.wait_for(lock, timeout,
                          [this] { return queued_.empty() && dropped_ == 0 && !busy_; });
}

std::uint64_t LogWriter::dropped_total() const {
    std::lock_guard lock(mu_);
    return dropped_total_;
}

void LogWriter::run() {
    // Signals are the loop's: none is delivered to this thread (a SIGPIPE from a closed
    // stderr stays pending here and the write fails with EPIPE instead).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::string batch;
    for (;;) {
        std::uint64_t dropped = 0;
        {
            std::unique_lock lock(mu_);
            busy_ = false;
            if (queued_.empty() && dropped_ == 0)
                idle_.notify_all();
            wake_.wait(lock, [this] { return stop_ || !queued_.empty() || dropped_ > 0; });
            if (queued_.empty() && dropped_ == 0)
                return; // stopping, and everything is written
            batch.clear();
            batch.swap(queued_);
            dropped = std::exchange(dropped_, 0);
            busy_ = true;
        }
        // Without the lock: this is the write that may block for as long as nobody reads.
        write_all(fd_, batch);
        // The drops happened while this batch filled the queue, so they come after it.
        if (dropped > 0)
            write_all(fd_, drop_line_(dropped));
    }
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

std::string dropped_line(std::uint64_t n) {
    return format_line(LogLevel::warn,
                       fmt::format("vigild dropped {} log lines (stderr was not being read)", n),
                       g_journal.load(), std::chrono::system_clock::now());
}

// Created by the first line and never destroyed: gRPC threads may still log while static
// destructors run, and the thread may sit in a write(2) that never returns.
std::once_flag g_writer_once;
LogWriter* g_writer = nullptr;

void flush_at_exit() {
    flush(kExitFlushTimeout);
}

LogWriter& writer() {
    std::call_once(g_writer_once, [] {
        g_writer = new LogWriter(STDERR_FILENO, kQueueBytes, dropped_line);
        std::atexit(flush_at_exit);
    });
    return *g_writer;
}

} // namespace

std::string format_line(LogLevel level, std::string_view message, bool journal,
                        std::chrono::system_clock::time_point when) {
    if (journal)
        return fmt::format("<{}>{}\n", syslog_priority(level), message);
    const auto since_epoch = when.time_since_epoch();
    const auto secs = std::chrono::floor<std::chrono::seconds>(since_epoch);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs);
    const std::time_t t = static_cast<std::time_t>(secs.count());
    struct tm tm;
    localtime_r(&t, &tm);
    // The same time format as vigilctl's (status, events, logs): with the zone.
    char stamp[32], zone[16];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    if (strftime(zone, sizeof zone, "%Z", &tm) == 0)
        zone[0] = '\0';
    return fmt::format("{}.{:03d} {} {:<5} {}\n", stamp, static_cast<int>(ms.count()), zone,
                       to_string(level), message);
}

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
    writer();
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
    writer().push(format_line(level, message, g_journal.load(), std::chrono::system_clock::now()));
}

bool flush(std::chrono::milliseconds timeout) {
    return writer().flush(timeout);
}

std::uint64_t dropped_total() {
    return writer().dropped_total();
}

} // namespace log
} // namespace vigil
