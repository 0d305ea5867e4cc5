// The child's execution environment: who it runs as, its limits, directory, umask and
// environment, prepared by vigild before each spawn into a plain struct that the spawn
// path only reads (no allocation, no lookups in the spawned child).
//
// Names are resolved here, in vigild: getpwnam_r and friends may take locks and open
// files (NSS), which the vfork'ed child must never do; and they are resolved when the
// configuration is loaded or reloaded (resolve_child_identity), not at each start, since
// a name service may block the loop.
#pragma once

#include "vigil/config.hpp"
#include "vigil/limits.hpp"
#include "vigil/result.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vigil {

struct UserInfo {
    uid_t uid = 0;
    gid_t gid = 0; // the user's primary group
    std::string name;
    std::string home;
    std::string shell;
};

// A user by name or number ("nobody", "65534"). A number without a passwd entry is taken
// as it is (name "", home "/", primary group = the same number).
Result<UserInfo> lookup_user(const std::string& spec);
// A group by name or number.
Result<gid_t> lookup_group(const std::string& spec);
// The groups `user` is a member of (getgrouplist), with `primary` included.
Result<std::vector<gid_t>> user_groups(const UserInfo& user, gid_t primary);

// How many user and group lookups (getpwnam_r, getpwuid_r, getgrnam_r, getgrouplist) this
// process made through the functions above: each may ask a name service (NSS: LDAP, sssd),
// so the event loop must not make them per start. Tests read it.
std::uint64_t name_lookup_count();

// Who the child runs as, with every name resolved. Resolved once per configuration (when
// it is loaded or reloaded), never on the loop at each start: a lookup may block on a
// remote name service for seconds.
struct ChildIdentity {
    std::optional<UserInfo> user; // [child] user, if set
    std::optional<uid_t> uid;     // nullopt: keep vigild's
    std::optional<gid_t> gid;
    std::optional<std::vector<gid_t>> groups; // setgroups; nullopt: keep vigild's
    std::string user_name;                    // for messages: "nobody (65534)", "" = vigild's
};

// Resolves [child] user, group and supplementary_groups (with user set and no
// supplementary_groups: the user's groups, as initgroups(3)). Fails with a message naming
// the unknown user or group.
Result<ChildIdentity> resolve_child_identity(const ChildConfig& c);

struct ExecEnv {
    std::optional<uid_t> uid; // nullopt: keep vigild's
    std::optional<gid_t> gid;
    std::optional<std::vector<gid_t>> groups; // setgroups; nullopt: keep vigild's
    std::vector<RLimitSetting> limits;
    std::string working_directory;
    mode_t umask = 022;
    bool no_new_privileges = false;
    std::vector<std::string> env; // NAME=VALUE, complete (the spawn token is added later)
    std::string user_name;        // for messages: "nobody (65534)", "" = vigild's user
};

// Takes the resolved `identity`, reads the env files (at each start, so an edited file
// applies at the next one; each read is bounded) and builds the environment: vigild's own
// (unless inherit_env = false), USER/LOGNAME/HOME/SHELL of `user` if set, the files in
// order, [child] env; then NOTIFY_SOCKET, LISTEN_*, WATCHDOG_* and VIGIL_SPAWN_TOKEN are
// removed, last. Fails with a message that names what is wrong (a missing env file's path).
Result<ExecEnv> prepare_exec_env(const ChildConfig& c, const ChildIdentity& identity);
// Both steps at once (resolve_child_identity, then the above): for tools and tests, not
// for the loop.
Result<ExecEnv> prepare_exec_env(const ChildConfig& c);

} // namespace vigil
