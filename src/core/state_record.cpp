#include "vigil/state_record.hpp"

#include "vigil/fs_util.hpp"

#include <fmt/format.h>

#include <charconv>
#include <sstream>

namespace vigil {

std::string format_state_record(const ProcessIdentity& id) {
    return fmt::format("pid={}\nstart_time={}\nboot_id={}\nexe={}\n", id.pid, id.start_time,
                       id.boot_id, id.exe);
}

namespace {

template <typename T> bool parse_number(const std::string& s, T& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

} // namespace

Result<ProcessIdentity> parse_state_record(const std::string& text) {
    ProcessIdentity id;
    bool has_pid = false, has_start = false, has_boot = false, has_exe = false;
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty())
            continue;
        auto eq = line.find('=');
        if (eq == std::string::npos)
            return make_error(fmt::format("line {}: expected key=value", lineno));
        std::string key = line.substr(0, eq), value = line.substr(eq + 1);
        if (key == "pid") {
            if (!parse_number(value, id.pid) || id.pid <= 0)
                return make_error(fmt::format("line {}: bad pid '{}'", lineno, value));
            has_pid = true;
        } else if (key == "start_time") {
            if (!parse_number(value, id.start_time))
                return make_error(fmt::format("line {}: bad start_time '{}'", lineno, value));
            has_start = true;
        } else if (key == "boot_id") {
            id.boot_id = value;
            has_boot = !value.empty();
        } else if (key == "exe") {
            id.exe = value;
            has_exe = !value.empty();
        } else {
            return make_error(fmt::format("line {}: unknown key '{}'", lineno, key));
        }
    }
    if (!has_pid || !has_start || !has_boot || !has_exe)
        return make_error("incomplete record (needs pid, start_time, boot_id and exe)");
    return id;
}

Status write_child_records(const std::string& state_dir, const ProcessIdentity& id) {
    if (auto st = atomic_write_file(state_dir, kStateRecordName, format_state_record(id), 0600);
        !st)
        return st;
    return atomic_write_file(state_dir, kPidFileName, fmt::format("{}\n", id.pid), 0644);
}

void remove_child_records(const std::string& state_dir) {
    (void)remove_file(state_dir + "/" + kPidFileName);
    (void)remove_file(state_dir + "/" + kStateRecordName);
}

std::optional<AdoptableChild> find_adoptable_child(const std::string& state_dir,
                                                   std::string& why_not) {
    const std::string path = state_dir + "/" + kStateRecordName;
    auto text = read_file_nofollow(path);
    if (!text) {
        why_not = text.error().code == std::errc::no_such_file_or_directory
                      ? "no child record in " + state_dir
                      : text.error().message();
        return std::nullopt;
    }
    auto recorded = parse_state_record(*text);
    if (!recorded) {
        why_not = fmt::format("garbled child record {}: {}", path, recorded.error().message());
        return std::nullopt;
    }
    auto pidfd = pidfd_open(recorded->pid);
    if (!pidfd) {
        why_not = fmt::format("recorded child pid {} is gone", recorded->pid);
        return std::nullopt;
    }
    auto actual = read_identity(recorded->pid);
    if (!actual || pidfd_exited(pidfd->get())) {
        why_not = fmt::format("recorded child pid {} has exited", recorded->pid);
        return std::nullopt;
    }
    if (auto mismatch = identity_mismatch(*recorded, *actual); !mismatch.empty()) {
        why_not = mismatch;
        return std::nullopt;
    }
    return AdoptableChild{*recorded, std::move(*pidfd)};
}

} // namespace vigil
