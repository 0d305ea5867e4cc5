#include "vigil/state_record.hpp"

#include "vigil/fs_util.hpp"
#include "vigil/log.hpp"
#include "vigil/record_text.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <map>
#include <sys/random.h>

namespace vigil {
namespace {

template <typename T> bool parse_number(const std::string& s, T& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool is_token(const std::string& s) {
    return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

std::string format_state_record(const ChildRecord& r) {
    return fmt::format("instance={}\npid={}\nstart_time={}\nboot_id={}\nexe={}\nuid={}\ntoken={}\n",
                       r.instance, r.identity.pid, r.identity.start_time, r.identity.boot_id,
                       r.identity.exe, r.identity.uid, r.token.empty() ? "none" : r.token);
}

Result<ChildRecord> parse_state_record(const std::string& text) {
    auto kv = parse_record_lines(
        text, {"instance", "pid", "start_time", "boot_id", "exe", "uid", "token"});
    if (!kv)
        return kv.error();
    auto& m = *kv;
    ChildRecord r;
    r.instance = m["instance"];
    if (!parse_number(m["pid"], r.identity.pid) || r.identity.pid <= 0)
        return make_error(fmt::format("bad pid '{}'", m["pid"].substr(0, 40)));
    if (!parse_number(m["start_time"], r.identity.start_time))
        return make_error(fmt::format("bad start_time '{}'", m["start_time"].substr(0, 40)));
    if (!parse_number(m["uid"], r.identity.uid))
        return make_error(fmt::format("bad uid '{}'", m["uid"].substr(0, 40)));
    r.identity.boot_id = m["boot_id"];
    r.identity.exe = m["exe"];
    if (m["token"] != "none") {
        if (!is_token(m["token"]))
            return make_error("bad token (32 hex digits or none)");
        r.token = m["token"];
    }
    return r;
}

std::string format_next_spawn(const NextSpawn& n) {
    return fmt::format("instance={}\nboot_id={}\ntoken={}\nbinary={}\n", n.instance, n.boot_id,
                       n.token, n.binary);
}

Result<NextSpawn> parse_next_spawn(const std::string& text) {
    auto kv = parse_record_lines(text, {"instance", "boot_id", "token", "binary"});
    if (!kv)
        return kv.error();
    auto& m = *kv;
    if (!is_token(m["token"]))
        return make_error("bad token (32 hex digits)");
    return NextSpawn{m["instance"], m["boot_id"], m["token"], m["binary"]};
}

std::string new_spawn_token() {
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; // cannot happen on Linux >= 3.17 once the pool is initialised
        got += static_cast<size_t>(n);
    }
    std::string out;
    for (unsigned char c : raw)
        out += fmt::format("{:02x}", c);
    return out;
}

Status write_child_records(const std::string& state_dir, const ChildRecord& r) {
    if (auto st = atomic_write_file(state_dir, kStateRecordName, format_state_record(r), 0600,
                                    Durability::process_crash);
        !st)
        return st;
    return atomic_write_file(state_dir, kPidFileName, fmt::format("{}\n", r.identity.pid), 0644,
                             Durability::process_crash);
}

void remove_child_records(const std::string& state_dir) {
    (void)remove_file(state_dir + "/" + kPidFileName);
    (void)remove_file(state_dir + "/" + kStateRecordName);
}

Status write_next_spawn(const std::string& state_dir, const NextSpawn& n) {
    return atomic_write_file(state_dir, kNextSpawnName, format_next_spawn(n), 0600,
                             Durability::process_crash);
}

namespace {

// A record's text if vigild could have written it; else nullopt with `why_not` set to
// `absent` (no such file) or to why it is ignored (logged: it may be a forgery).
std::optional<std::string> read_record(const std::string& path, const std::string& absent,
                                       std::string& why_not) {
    auto text = read_trusted_file(path, kMaxRecordBytes);
    if (text)
        return std::move(*text);
    if (text.error().code == std::errc::no_such_file_or_directory) {
        why_not = absent;
    } else {
        why_not = "ignoring " + text.error().message();
        log::warn("{} (vigild believes only records it could have written itself)", why_not);
    }
    return std::nullopt;
}

} // namespace

std::optional<NextSpawn> read_next_spawn(const std::string& state_dir, const std::string& instance,
                                         std::string& why_not) {
    const std::string path = state_dir + "/" + kNextSpawnName;
    auto text = read_record(path, "no next-spawn record", why_not);
    if (!text)
        return std::nullopt;
    auto next = parse_next_spawn(*text);
    if (!next) {
        why_not = fmt::format("garbled next-spawn record {}: {}", path, next.error().message());
        return std::nullopt;
    }
    if (next->instance != instance) {
        why_not = fmt::format("next-spawn record {} belongs to instance {}, not {}", path,
                              next->instance, instance);
        log::warn("ignoring {}", why_not);
        return std::nullopt;
    }
    auto boot = read_boot_id();
    if (!boot || *boot != next->boot_id) {
        why_not = "the next-spawn record is from another boot";
        return std::nullopt;
    }
    return *next;
}

namespace {

// Step 1 of find_adoptable_child: the child record.
std::optional<AdoptableChild> adopt_by_record(const std::string& state_dir,
                                              const std::string& instance, std::string& why_not) {
    const std::string path = state_dir + "/" + kStateRecordName;
    auto text = read_record(path, "no child record in " + state_dir, why_not);
    if (!text)
        return std::nullopt;
    auto recorded = parse_state_record(*text);
    if (!recorded) {
        why_not = fmt::format("garbled child record {}: {}", path, recorded.error().message());
        return std::nullopt;
    }
    if (recorded->instance != instance) {
        why_not = fmt::format("child record {} belongs to instance {}, not {}", path,
                              recorded->instance, instance);
        log::warn("ignoring {}: a copied record must not lead to another vigild's child", why_not);
        return std::nullopt;
    }
    const pid_t pid = recorded->identity.pid;
    auto pidfd = pidfd_open(pid);
    if (!pidfd) {
        why_not = fmt::format("recorded child pid {} is gone", pid);
        return std::nullopt;
    }
    auto actual = read_identity(pid);
    if (!actual || pidfd_exited(pidfd->get())) {
        why_not = fmt::format("recorded child pid {} has exited", pid);
        return std::nullopt;
    }
    if (auto mismatch = identity_mismatch(recorded->identity, *actual); !mismatch.empty()) {
        why_not = mismatch;
        return std::nullopt;
    }
    return AdoptableChild{*recorded, std::move(*pidfd), false};
}

// Step 2: a live process carrying the next spawn's token.
std::optional<AdoptableChild> adopt_by_token(const std::string& state_dir,
                                             const std::string& instance, std::string& why_not) {
    auto next = read_next_spawn(state_dir, instance, why_not);
    if (!next)
        return std::nullopt;
    const std::string entry = fmt::format("{}={}", kSpawnTokenEnv, next->token);
    for (pid_t pid : find_processes_with_env(entry)) {
        auto pidfd = pidfd_open(pid);
        if (!pidfd)
            continue;
        auto actual = read_identity(pid);
        // Read after the pidfd was opened and checked alive after: the environment and
        // identity belong to the process the pidfd names.
        if (!actual || !environ_has(pid, entry) || pidfd_exited(pidfd->get()))
            continue;
        ProcessIdentity expected = *actual;
        expected.exe = next->binary;
        if (!identity_mismatch(expected, *actual).empty())
            continue; // e.g. a helper the child exec'd, which inherited the token
        return AdoptableChild{ChildRecord{instance, *actual, next->token}, std::move(*pidfd), true};
    }
    why_not = "no process carries the next spawn's token";
    return std::nullopt;
}

} // namespace

std::optional<AdoptableChild> find_adoptable_child(const std::string& state_dir,
                                                   const std::string& instance,
                                                   std::string& why_not) {
    std::string by_record;
    if (auto found = adopt_by_record(state_dir, instance, by_record))
        return found;
    std::string by_token;
    if (auto found = adopt_by_token(state_dir, instance, by_token))
        return found;
    why_not = by_record + "; " + by_token;
    return std::nullopt;
}

} // namespace vigil
