// The child's records in the state dir: the pid file (bare decimal pid, for tools) and
// the state record beside it (the identity that proves the pid before it is trusted).
#pragma once

#include "vigil/process.hpp"
#include "vigil/result.hpp"

#include <optional>
#include <string>

namespace vigil {

inline constexpr const char* kPidFileName = "child.pid";
inline constexpr const char* kStateRecordName = "child.state";

// "pid=..\nstart_time=..\nboot_id=..\nexe=..\n"
std::string format_state_record(const ProcessIdentity& id);
// Fails with a message that says what is wrong with the text.
Result<ProcessIdentity> parse_state_record(const std::string& text);

// Writes both files atomically (pid file last is irrelevant: each is atomic alone).
Status write_child_records(const std::string& state_dir, const ProcessIdentity& id);
void remove_child_records(const std::string& state_dir);

// A recorded child proven to be the same process, with a pidfd that names it.
struct AdoptableChild {
    ProcessIdentity identity;
    UniqueFd pidfd;
};

// Looks for a child to adopt. Returns the child, or nullopt with `why_not` set to the
// reason (no record, garbled record, dead, reused pid, different executable). The pidfd
// is opened before the identity is read and checked to still be alive afterwards, so the
// identity read belongs to the process the pidfd names.
std::optional<AdoptableChild> find_adoptable_child(const std::string& state_dir,
                                                   std::string& why_not);

} // namespace vigil
