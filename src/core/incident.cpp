#include "vigil/incident.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

namespace vigil {
namespace {

constexpr std::string_view kPrefix = "incident-";
constexpr std::string_view kSuffix = ".txt";
// /proc reads: each file at most this much (a kernel stack is a few hundred bytes,
// limits ~1.5 KiB, status ~1.5 KiB).
constexpr std::size_t kProcReadMax = 64 * 1024;
// fds counted at most: past this the count says "at least".
constexpr int kMaxFdsCounted = 100000;

std::string utc(SystemTime t, const char* format) {
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[64];
    const std::size_t n = std::strftime(buf, sizeof buf, format, &tm);
    return std::string(buf, n);
}

std::string when(SystemTime t) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    return fmt::format("{}.{:03} UTC", utc(t, "%Y-%m-%d %H:%M:%S"), ms);
}

std::string proc_file(pid_t pid, const char* name) {
    auto text = read_file_nofollow(fmt::format("/proc/{}/{}", pid, name), kProcReadMax);
    if (!text)
        return "(unreadable: " + text.error().message() + ")";
    return *text;
}

// The first bytes of a report (its head: id, kind, time, pid, reason): never more, never
// through a symlink, never blocking on a FIFO.
std::string read_head(const std::string& path) {
    constexpr std::size_t kHead = 4096;
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return {};
    std::string buf(kHead, '\0');
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    ::close(fd);
    return n > 0 ? buf.substr(0, static_cast<std::size_t>(n)) : std::string();
}

bool valid_id(const std::string& id) {
    return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= '0' && c <= '9') || c == 'T' || c == 'Z' || c == '-';
    });
}

std::string indent(const std::string& text) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        out += "    " + text.substr(start, end - start) + "\n";
        start = end + 1;
    }
    return out.empty() ? "    (empty)\n" : out;
}

} // namespace

std::string incident_id(SystemTime at, pid_t pid) {
    return fmt::format("{}-{}", utc(at, "%Y%m%dT%H%M%SZ"), pid);
}

ProcEvidence collect_proc_evidence(pid_t pid) {
    ProcEvidence e;
    e.status = proc_file(pid, "status");
    e.wchan = proc_file(pid, "wchan");
    e.stack = proc_file(pid, "stack"); // root with CAP_SYS_ADMIN only
    e.limits = proc_file(pid, "limits");
    if (DIR* d = ::opendir(fmt::format("/proc/{}/fd", pid).c_str())) {
        int n = 0;
        while (const dirent* ent = ::readdir(d)) {
            if (ent->d_name[0] == '.')
                continue;
            if (++n >= kMaxFdsCounted)
                break;
        }
        ::closedir(d);
        e.fd_count = n;
    }
    return e;
}

std::string render_incident(const Incident& in, std::size_t cap) {
    std::string head = fmt::format("vigil incident {}\nkind: {}\ntime: {}\npid: {}\nreason: {}\n",
                                   in.id, in.kind, when(in.at), in.pid, in.reason);
    head += fmt::format("exit: {}\n", in.exit ? describe(*in.exit) : "not seen");
    head += "\nlast health checks (oldest first):\n";
    if (in.probes.empty())
        head += "    (none)\n";
    for (const auto& p : in.probes)
        head +=
            fmt::format("    {}  {}  took {}\n", when(p.at), p.result,
                        p.latency.count() == 0 ? std::string("<1ms") : format_duration(p.latency));
    std::string proc;
    if (in.proc) {
        proc += fmt::format("\nopen fds: {}\n", in.proc->fd_count < 0
                                                    ? std::string("unknown")
                                                    : std::to_string(in.proc->fd_count));
        proc += "\nwchan: " + in.proc->wchan + "\n";
        proc += "\n/proc/PID/stack:\n" + indent(in.proc->stack);
        proc += "\n/proc/PID/status:\n" + indent(in.proc->status);
        proc += "\n/proc/PID/limits:\n" + indent(in.proc->limits);
    }
    std::string output = fmt::format("\noutput ({}):\n", in.output_note);
    for (const auto& l : in.output)
        output += "    " + l + "\n";
    if (in.output.empty())
        output += "    (none)\n";
    // Within the cap: the head always; then /proc; the output takes what is left, cut
    // from its start (the end of a stack dump is where the goroutines of interest are
    // least likely; but the last lines before a death are the panic): keep its end.
    std::string out = head;
    if (out.size() + proc.size() <= cap)
        out += proc;
    if (out.size() + output.size() > cap) {
        const std::size_t room = cap > out.size() + 64 ? cap - out.size() - 64 : 0;
        output = "\noutput (cut to its last " + std::to_string(room) + " bytes):\n" +
                 output.substr(output.size() - std::min(room, output.size()));
    }
    out += output;
    return out.substr(0, cap);
}

void IncidentStore::configure(const std::string& dir, unsigned keep) {
    if (dir == dir_ && keep == keep_)
        return;
    dir_ = dir;
    keep_ = keep;
    index_.clear();
    loaded_ = false;
}

const std::deque<IncidentStore::Summary>& IncidentStore::list() const {
    load();
    return index_;
}

void IncidentStore::load() const {
    if (loaded_ || dir_.empty())
        return;
    loaded_ = true;
    std::vector<std::string> ids;
    if (DIR* d = ::opendir(dir_.c_str())) {
        while (const dirent* ent = ::readdir(d)) {
            const std::string_view name = ent->d_name;
            if (name.starts_with(kPrefix) && name.ends_with(kSuffix)) {
                std::string id(
                    name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size()));
                if (valid_id(id))
                    ids.push_back(std::move(id));
            }
        }
        ::closedir(d);
    }
    std::sort(ids.rbegin(), ids.rend()); // newest first: ids start with the time
    for (const auto& id : ids) {
        const std::string path = dir_ + "/" + std::string(kPrefix) + id + std::string(kSuffix);
        if (index_.size() >= keep_) {
            (void)remove_file(path);
            continue;
        }
        const std::string head = read_head(path);
        auto field = [&](std::string_view key) {
            const auto at = head.find("\n" + std::string(key) + ": ");
            if (at == std::string::npos)
                return std::string("?");
            const auto begin = at + key.size() + 3;
            return head.substr(begin, head.find('\n', begin) - begin);
        };
        index_.push_back(Summary{id, field("kind"), field("reason")});
    }
}

Result<std::string> IncidentStore::write(const Incident& incident) {
    load();
    if (dir_.empty())
        return make_error("incident reports are off ([incidents] dir = \"\")");
    if (auto st = ensure_dir(dir_, 0700); !st)
        return st.error();
    std::string id = incident.id;
    if (!valid_id(id))
        return make_error(fmt::format("bad incident id '{}'", id));
    const std::string name = std::string(kPrefix) + id + std::string(kSuffix);
    // A report's loss on a machine crash is acceptable; an fsync on the loop is not.
    if (auto st = atomic_write_file(dir_, name, render_incident(incident, kReportCap), 0600,
                                    Durability::process_crash);
        !st)
        return st.error();
    index_.push_front(Summary{id, incident.kind, incident.reason});
    while (index_.size() > keep_) {
        (void)remove_file(dir_ + "/" + std::string(kPrefix) + index_.back().id +
                          std::string(kSuffix));
        index_.pop_back();
    }
    return id;
}

Result<std::string> IncidentStore::read(const std::string& id) const {
    if (dir_.empty())
        return make_error("incident reports are off ([incidents] dir = \"\")");
    if (!valid_id(id))
        return make_error(ENOENT, fmt::format("no incident '{}'", id.substr(0, 64)));
    return read_trusted_file(dir_ + "/" + std::string(kPrefix) + id + std::string(kSuffix),
                             kReportCap);
}

} // namespace vigil
