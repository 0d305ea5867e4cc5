// [child] output = "capture": vigild reads the child's stdout and stderr through pipes,
// logs each line tagged with the pid and stream, and keeps the last lines for
// `vigilctl logs`.
//
// Loop thread only. Reads are asynchronous (asio stream descriptors); a line longer than
// kMaxLineBytes is cut into pieces so a child without newlines cannot grow vigild's memory.
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

namespace vigil {

inline constexpr size_t kCapturedLinesKept = 1000;
inline constexpr size_t kMaxLineBytes = 16 * 1024;

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
    std::uint64_t subscribe(Subscriber s);
    void unsubscribe(std::uint64_t id);

private:
    struct Reader;
    void start_read(const std::shared_ptr<Reader>& r);
    void emit(pid_t pid, const std::string& stream, std::string text);

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
