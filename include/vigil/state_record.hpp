// The child's records in the state dir:
// - the pid file (bare decimal pid, for tools; vigild never reads it);
// - the child record, the identity that proves the pid before it is trusted, and the
//   instance (state dir) it belongs to;
// - the next-spawn record: the token the next spawned child will carry in its environment
//   (VIGIL_SPAWN_TOKEN), written before that spawn, so a vigild killed between the spawn
//   and the child record still leaves a way to find its child (see find_adoptable_child).
//
// Every record is read only if vigild could have written it (read_trusted_file): a
// regular file owned by vigild's euid, closed to writes by others, with one link.
#pragma once

#include "vigil/process.hpp"
#include "vigil/result.hpp"

#include <optional>
#include <string>

namespace vigil {

inline constexpr const char* kPidFileName = "child.pid";
inline constexpr const char* kStateRecordName = "child.state";
inline constexpr const char* kNextSpawnName = "child.next";
// The environment variable that carries a spawned child's token.
inline constexpr const char* kSpawnTokenEnv = "VIGIL_SPAWN_TOKEN";
// Records are a few hundred bytes; anything larger is not one of ours.
inline constexpr size_t kMaxRecordBytes = 64 * 1024;

struct ChildRecord {
    std::string instance; // the state dir (canonical path) of the vigild that wrote it
    ProcessIdentity identity;
    std::string token; // the spawn token in the child's environment; "" = none (adopted)

    bool operator==(const ChildRecord&) const = default;
};

// "instance=..\npid=..\nstart_time=..\nboot_id=..\nexe=..\nuid=..\ntoken=..\n"
std::string format_state_record(const ChildRecord& r);
// Fails with a message that says what is wrong with the text.
Result<ChildRecord> parse_state_record(const std::string& text);

struct NextSpawn {
    std::string instance;
    std::string boot_id;
    std::string token;
    std::string binary; // the executable (canonical path) the next spawn runs

    bool operator==(const NextSpawn&) const = default;
};

std::string format_next_spawn(const NextSpawn& n);
Result<NextSpawn> parse_next_spawn(const std::string& text);
// 128 random bits as 32 hex digits (getrandom).
std::string new_spawn_token();

// Writes the child record and the pid file, each atomically.
Status write_child_records(const std::string& state_dir, const ChildRecord& r);
// Removes the pid file and the child record (not the next-spawn record).
void remove_child_records(const std::string& state_dir);
Status write_next_spawn(const std::string& state_dir, const NextSpawn& n);
// The next-spawn record if it is trusted and belongs to `instance` and this boot; else
// nullopt with `why_not` set.
std::optional<NextSpawn> read_next_spawn(const std::string& state_dir, const std::string& instance,
                                         std::string& why_not);

// A recorded child proven to be the same process, with a pidfd that names it.
struct AdoptableChild {
    ChildRecord record;
    UniqueFd pidfd;
    bool by_token = false; // found through the next-spawn token, not the child record
};

// Looks for a child to adopt, in two steps:
// 1. the child record, if trusted and of this `instance`: its pid must name the same live
//    process (start time, boot id, executable);
// 2. else the next-spawn record: a live process whose environment carries its token and
//    whose executable is the one recorded (the oldest, if several: a fork of the child
//    inherits the token, a later exec changes the executable).
// Returns the child, or nullopt with `why_not` set to every reason (no record, untrusted
// or garbled record, another instance's, dead, reused pid, different executable). Every
// pidfd is opened before the identity is read and checked to still be alive afterwards, so
// the identity read belongs to the process the pidfd names. Untrusted records are logged.
std::optional<AdoptableChild> find_adoptable_child(const std::string& state_dir,
                                                   const std::string& instance,
                                                   std::string& why_not);

} // namespace vigil
