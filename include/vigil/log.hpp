// vigild's log: leveled lines on stderr, written by a thread of their own.
//
// When JOURNAL_STREAM names stderr (stderr is connected to journald) each line carries a
// syslog priority prefix such as "<6>" and no timestamp, because journald adds both.
// Otherwise each line starts with a local timestamp.
//
// Logging never blocks the caller: a line is formatted on the calling thread (any thread:
// the loop, gRPC threads) and appended to a bounded in-memory queue; one writer thread
// owns the blocking write(2) to stderr. When stderr is not being read and the queue is
// full, new lines are dropped and counted; once the writer gets through again it writes
// "vigild dropped N log lines (stderr was not being read)". stderr is never made
// O_NONBLOCK: a child with output = "inherit" shares its open file description. The
// writer thread blocks every signal, so signals reach the loop's thread only.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace vigil {

enum class LogLevel { trace, debug, info, warn, error };

std::optional<LogLevel> parse_log_level(std::string_view s);
std::string_view to_string(LogLevel level);

// A bounded queue of bytes in front of a blocking fd, drained by its own thread. Every
// member is thread-safe. Each push()ed string is written with the writes of its batch, in
// push order; a string is never split between two batches, so lines never interleave.
class LogWriter {
public:
    // `drop_line(n)` makes the line written after a batch during which n pushes were
    // dropped. The fd stays the caller's (it is not closed).
    LogWriter(int fd, size_t capacity_bytes, std::function<std::string(std::uint64_t)> drop_line);
    // Writes what is queued, then joins the thread: only for an fd that will take the bytes.
    ~LogWriter();
    LogWriter(const LogWriter&) = delete;
    LogWriter& operator=(const LogWriter&) = delete;

    // Queues `line` unless that would take the queue past its capacity; then counts a drop
    // and returns false. Never waits for the fd.
    bool push(std::string_view line);
    // Waits until everything queued (and the drop line it is owed) has been written, or
    // `timeout` passes; true if everything was written.
    bool flush(std::chrono::milliseconds timeout);
    // Pushes dropped since this writer started.
    std::uint64_t dropped_total() const;

private:
    void run();

    const int fd_;
    const size_t capacity_;
    const std::function<std::string(std::uint64_t)> drop_line_;
    mutable std::mutex mu_;
    std::condition_variable wake_; // the writer: work or stop
    std::condition_variable idle_; // flush(): the writer has nothing left
    std::string queued_;
    std::uint64_t dropped_ = 0;       // since the last batch was taken
    std::uint64_t dropped_total_ = 0; // since the start
    bool busy_ = false;               // the writer holds a batch it has not finished
    bool stop_ = false;
    std::thread thread_; // last: started once every member above exists
};

namespace log {

// The most log bytes waiting for stderr; beyond it lines are dropped and counted.
inline constexpr size_t kQueueBytes = 1024 * 1024;
// How long vigild's exit waits for queued lines to reach a stderr that does not take them.
inline constexpr std::chrono::milliseconds kExitFlushTimeout{2000};

// Called once in main(); reads JOURNAL_STREAM.
void init(LogLevel level);
void set_level(LogLevel level);
LogLevel level();
bool enabled(LogLevel level);
// Any thread. Formats the line and queues it for stderr; never waits for stderr. The
// writer starts with the first line; at exit (atexit) vigild waits up to
// kExitFlushTimeout for the queue to drain.
void write(LogLevel level, std::string_view message);
// gRPC's own log lines (GRPC_VERBOSITY, default ERROR) into this log's queue: by default
// gRPC writes them to stderr itself, from its threads, and would block there. In
// grpc_log.cpp, part of the control module (control_module.hpp), which calls it when it is
// loaded: vigild itself does not link gRPC.
void route_grpc_logs();
// Waits up to `timeout` until every line written so far is on stderr.
bool flush(std::chrono::milliseconds timeout = kExitFlushTimeout);
// Lines dropped because stderr was not being read, since the start.
std::uint64_t dropped_total();

// One finished line, newline included: "<6>message\n" for journald, else
// "2024-05-01 12:00:00.042 UTC info  message\n" (local time and its zone).
std::string format_line(LogLevel level, std::string_view message, bool journal,
                        std::chrono::system_clock::time_point when);

template <typename... Args> void trace(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::trace))
        write(LogLevel::trace, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::debug))
        write(LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void info(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::info))
        write(LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::warn))
        write(LogLevel::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args> void error(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(LogLevel::error))
        write(LogLevel::error, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace log
} // namespace vigil
