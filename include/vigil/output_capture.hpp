// [child] output = "capture": vigild reads the child's stdout and stderr through pipes,
// logs each line tagged with the pid and stream, and keeps the last lines for
// `vigilctl logs`.
//
// Loop thread only. Reads are asynchronous (asio stream descriptors); a line longer than
// kMaxLineBytes is cut into pieces (at a UTF-8 character boundary) so a child without
// newlines cannot grow vigild's memory. Each line is escaped (escape_child_text) before it
// is logged, kept or sent: child bytes never reach vigild's log or a terminal raw.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/result.hpp"
#include "vigil/unique_fd.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace vigil {

inline constexpr size_t kCapturedLinesKept = 1000;
inline constexpr size_t kMaxLineBytes = 16 * 1024;

// Makes a child's line safe for a terminal, a log file and a proto3 string (valid UTF-8):
// control bytes (C0 but tab, and DEL) and each byte of an invalid UTF-8 sequence become
// "\xHH"; the C1 controls U+0080..U+009F (valid UTF-8, but terminals act on some) become
// "\u00HH". Everything else, tabs and backslashes included, is kept as it is.
std::string escape_child_text(std::string_view raw);

// The level a captured line is logged at: the level the child wrote into it, as
// logfmt (`level=error`, containerd's form) or JSON (`"level":"warn"`), mapped to
// vigild's (panic/fatal/error -> error, warning/warn -> warn, debug/trace -> debug);
// info otherwise.
LogLevel child_line_level(std::string_view text);

class OutputCapture {
public:
    using Subscriber = std::function<void(const LogLine&)>;

    explicit OutputCapture(asio::io_context& io, size_t keep = kCapturedLinesKept);
    ~OutputCapture();

    // The write ends to hand to a new child as fds 1 and 2. The read ends are kept and
    // start being read at attach(); the caller closes the write ends after the spawn.
    struct Pipes {
        UniqueFd stdout_w, stderr_w;
    };
    Result<Pipes> prepare();
    void attach(pid_t pid); // the prepared pipes belong to `pid`
    void abandon();         // the spawn failed: drop the prepared read ends
    void close_all();       // vigild is exiting: stop reading

    std::vector<LogLine> lines() const { return {lines_.begin(), lines_.end()}; }
    std::uint64_t next_seq() const { return next_seq_; } // the next line's seq
    std::uint64_t subscribe(Subscriber s);
    void unsubscribe(std::uint64_t id);

private:
    struct Reader;
    void start_read(const std::shared_ptr<Reader>& r);
    // A line of any length: cut into pieces of at most kMaxLineBytes, each emit()ted.
    void emit_pieces(pid_t pid, const std::string& stream, std::string_view raw);
    void emit(pid_t pid, const std::string& stream, std::string raw);

    asio::io_context& io_;
    size_t keep_;
    std::deque<LogLine> lines_;
    std::uint64_t next_seq_ = 1;
    std::map<std::uint64_t, Subscriber> subscribers_;
    std::uint64_t next_sub_ = 1;
    std::vector<UniqueFd> prepared_; // read ends of stdout, stderr
    std::list<std::shared_ptr<Reader>> readers_;
};

} // namespace vigil
