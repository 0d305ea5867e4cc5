#include "vigil/output_capture.hpp"

#include "vigil/log.hpp"

#include <boost/locale/utf.hpp>

#include <algorithm>
#include <array>
#include <fcntl.h>
#include <unistd.h>

namespace vigil {

// One read takes up to this much: a child writing fast is read in few loop turns.
constexpr size_t kReadChunkBytes = 64 * 1024;
// The longest UTF-8 sequence, less its lead byte.
constexpr size_t kMaxUtf8TrailBytes = 3;

namespace {

void append_escaped_byte(std::string& out, unsigned char c) {
    out += fmt::format("\\x{:02x}", c);
}

// Where to cut `text`, which is longer than `limit`: at `limit`, or up to 3 bytes earlier
// so that a UTF-8 character is not split between the two pieces.
size_t cut_point(std::string_view text, size_t limit) {
    if (text.size() <= limit)
        return text.size();
    for (size_t back = 0; back <= kMaxUtf8TrailBytes && back < limit; ++back) {
        const auto c = static_cast<unsigned char>(text[limit - back]);
        if ((c & 0xC0) != 0x80)
            return limit - back; // not a continuation byte: a character starts here
    }
    return limit;
}

} // namespace

std::string escape_child_text(std::string_view raw) {
    using utf = boost::locale::utf::utf_traits<char>;
    // Most lines are printable ASCII: they are taken as they are.
    const bool plain = std::all_of(raw.begin(), raw.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return (c >= 0x20 && c < 0x7F) || c == '\t';
    });
    if (plain)
        return std::string(raw);
    std::string out;
    out.reserve(raw.size());
    auto p = raw.begin();
    while (p != raw.end()) {
        const auto c = static_cast<unsigned char>(*p);
        if (c < 0x80) {
            if (c == '\t' || (c >= 0x20 && c != 0x7F))
                out += static_cast<char>(c);
            else
                append_escaped_byte(out, c);
            ++p;
            continue;
        }
        auto next = p;
        const auto cp = utf::decode(next, raw.end());
        if (cp == boost::locale::utf::illegal || cp == boost::locale::utf::incomplete) {
            // Only the first byte is taken as bad: what follows is decoded afresh.
            append_escaped_byte(out, c);
            ++p;
        } else if (cp <= 0x9F) {
            out += fmt::format("\\u{:04x}", cp);
            p = next;
        } else {
            out.append(p, next);
            p = next;
        }
    }
    return out;
}

struct OutputCapture::Reader {
    Reader(asio::io_context& io, int fd, pid_t p, std::string s)
        : pipe(io, fd), pid(p), stream(std::move(s)) {}
    asio::posix::stream_descriptor pipe;
    pid_t pid;
    std::string stream;
    std::array<char, kReadChunkBytes> buf{};
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
            emit_pieces(r->pid, r->stream, std::string_view(r->partial).substr(start, nl - start));
        r->partial.erase(0, start);
        // What is left has no newline: once it is a full piece, it goes out as one.
        while (r->partial.size() >= kMaxLineBytes) {
            const size_t cut = cut_point(r->partial, kMaxLineBytes);
            emit(r->pid, r->stream, r->partial.substr(0, cut));
            r->partial.erase(0, cut);
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

void OutputCapture::emit_pieces(pid_t pid, const std::string& stream, std::string_view raw) {
    while (raw.size() > kMaxLineBytes) {
        const size_t cut = cut_point(raw, kMaxLineBytes);
        emit(pid, stream, std::string(raw.substr(0, cut)));
        raw.remove_prefix(cut);
    }
    emit(pid, stream, std::string(raw));
}

LogLevel child_line_level(std::string_view text) {
    for (std::string_view key : {"level=", "\"level\":\"", "level=\""}) {
        auto pos = text.find(key);
        if (pos == std::string_view::npos)
            continue;
        std::string_view v = text.substr(pos + key.size());
        v = v.substr(0, v.find_first_of(" \"\t,}"));
        if (v == "panic" || v == "fatal" || v == "error" || v == "err")
            return LogLevel::error;
        if (v == "warning" || v == "warn")
            return LogLevel::warn;
        if (v == "debug" || v == "trace")
            return LogLevel::debug;
        return LogLevel::info;
    }
    return LogLevel::info;
}

void OutputCapture::emit(pid_t pid, const std::string& stream, std::string raw) {
    std::string text = escape_child_text(raw);
    const LogLevel level = child_line_level(text);
    if (log::enabled(level))
        log::write(level, fmt::format("child[{}] {}: {}", pid, stream, text));
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
