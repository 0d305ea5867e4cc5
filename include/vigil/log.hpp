// vigild's log: leveled lines on stderr.
//
// When JOURNAL_STREAM names stderr (stderr is connected to journald) each line carries a
// syslog priority prefix such as "<6>" and no timestamp, because journald adds both.
// Otherwise each line starts with a local timestamp. Not thread-safe in the sense of
// ordering, but every line is written with a single write(2), so lines never interleave.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>

namespace vigil {

enum class LogLevel { trace, debug, info, warn, error };

std::optional<LogLevel> parse_log_level(std::string_view s);
std::string_view to_string(LogLevel level);

namespace log {

// Called once in main(); reads JOURNAL_STREAM.
void init(LogLevel level);
void set_level(LogLevel level);
LogLevel level();
bool enabled(LogLevel level);
void write(LogLevel level, std::string_view message);

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
