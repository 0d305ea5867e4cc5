#include "vigil/output_capture.hpp"

#include "vigil/log.hpp"

#include <array>
#include <fcntl.h>
#include <unistd.h>

namespace vigil {

struct OutputCapture::Reader {
    Reader(asio::io_context& io, int fd, pid_t p, std::string s)
        : pipe(io, fd), pid(p), stream(std::move(s)) {}
    asio::posix::stream_descriptor pipe;
    pid_t pid;
    std::string stream;
    std::array<char, 4096> buf{};
    std::string partial;
};

OutputCapture::OutputCapture(asio::io_context& io, size_t keep) : io_(io), keep_(keep) {}

OutputCapture::~OutputCapture() {
    close_all();
}

Result<OutputCapture::Pipes> OutputCapture::prepare() {
    abandon();
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
        return make_error(errno, "failed to create the child's stdout pipe");
    if (::pipe2(err, O_CLOEXEC) != 0) {
        int e = errno;
        ::close(out[0]);
        ::close(out[1]);
        return make_error(e, "failed to create the child's stderr pipe");
    }
    prepared_.emplace_back(out[0]);
    prepared_.emplace_back(err[0]);
    return Pipes{UniqueFd(out[1]), UniqueFd(err[1])};
}

void OutputCapture::attach(pid_t pid) {
    if (prepared_.size() != 2)
        return;
    auto out = std::make_shared<Reader>(io_, prepared_[0].release(), pid, "stdout");
    auto err = std::make_shared<Reader>(io_, prepared_[1].release(), pid, "stderr");
    prepared_.clear();
    readers_.push_back(out);
    readers_.push_back(err);
    start_read(out);
    start_read(err);
}

void OutputCapture::abandon() {
    prepared_.clear();
}

void OutputCapture::close_all() {
    abandon();
    for (auto& r : readers_) {
        boost::system::error_code ignored;
        r->pipe.close(ignored);
    }
    readers_.clear();
}

void OutputCapture::start_read(const std::shared_ptr<Reader>& r) {
    r->pipe.async_read_some(asio::buffer(r->buf), [this, r](const boost::system::error_code& ec,
                                                            size_t n) {
        if (ec == asio::error::operation_aborted)
            return; // closed by close_all(); `this` may be going away
        r->partial.append(r->buf.data(), n);
        size_t start = 0;
        for (size_t nl; (nl = r->partial.find('\n', start)) != std::string::npos; start = nl + 1)
            emit(r->pid, r->stream, r->partial.substr(start, nl - start));
        r->partial.erase(0, start);
        while (r->partial.size() >= kMaxLineBytes) {
            emit(r->pid, r->stream, r->partial.substr(0, kMaxLineBytes));
            r->partial.erase(0, kMaxLineBytes);
        }
        if (ec) { // EOF: every holder of the write end has exited or closed it
            if (!r->partial.empty())
                emit(r->pid, r->stream, std::move(r->partial));
            readers_.remove(r);
            return;
        }
        start_read(r);
    });
}

void OutputCapture::emit(pid_t pid, const std::string& stream, std::string text) {
    log::info("child[{}] {}: {}", pid, stream, text);
    LogLine line{next_seq_++, std::chrono::system_clock::now(), pid, stream, std::move(text)};
    lines_.push_back(line);
    while (lines_.size() > keep_)
        lines_.pop_front();
    // A copy: a subscriber may unsubscribe itself from its callback.
    auto subs = subscribers_;
    for (auto& [id, cb] : subs)
        cb(line);
}

std::uint64_t OutputCapture::subscribe(Subscriber s) {
    const auto id = next_sub_++;
    subscribers_.emplace(id, std::move(s));
    return id;
}

void OutputCapture::unsubscribe(std::uint64_t id) {
    subscribers_.erase(id);
}

} // namespace vigil
