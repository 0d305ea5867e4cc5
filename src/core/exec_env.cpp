#include "vigil/exec_env.hpp"

#include "vigil/env_file.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <grp.h>
#include <map>
#include <pwd.h>
#include <unistd.h>

extern char** environ;

namespace vigil {
namespace {

constexpr size_t kLookupBuffer = 64 * 1024;
constexpr int kMaxGroups = 65536;

template <typename T> std::optional<T> as_number(const std::string& s) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty())
        return std::nullopt;
    return v;
}

bool scrubbed(std::string_view name) {
    return name == "NOTIFY_SOCKET" || name.starts_with("LISTEN_") ||
           name.starts_with("WATCHDOG_") || name == "VIGIL_SPAWN_TOKEN";
}

std::atomic<std::uint64_t> g_name_lookups{0};

} // namespace

std::uint64_t name_lookup_count() {
    return g_name_lookups.load(std::memory_order_relaxed);
}

Result<UserInfo> lookup_user(const std::string& spec) {
    std::vector<char> buf(kLookupBuffer);
    struct passwd pw, *found = nullptr;
    int rc;
    g_name_lookups.fetch_add(1, std::memory_order_relaxed);
    if (auto uid = as_number<uid_t>(spec))
        rc = ::getpwuid_r(*uid, &pw, buf.data(), buf.size(), &found);
    else
        rc = ::getpwnam_r(spec.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0)
        return make_error(rc, fmt::format("failed to look up user {}", spec));
    if (found == nullptr) {
        if (auto uid = as_number<uid_t>(spec))
            return UserInfo{*uid, static_cast<gid_t>(*uid), "", "/", ""};
        return make_error(fmt::format("no such user: {}", spec));
    }
    return UserInfo{pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir ? pw.pw_dir : "/",
                    pw.pw_shell ? pw.pw_shell : ""};
}

Result<gid_t> lookup_group(const std::string& spec) {
    if (auto gid = as_number<gid_t>(spec))
        return *gid;
    std::vector<char> buf(kLookupBuffer);
    struct group gr, *found = nullptr;
    g_name_lookups.fetch_add(1, std::memory_order_relaxed);
    int rc = ::getgrnam_r(spec.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc != 0)
        return make_error(rc, fmt::format("failed to look up group {}", spec));
    if (found == nullptr)
        return make_error(fmt::format("no such group: {}", spec));
    return gr.gr_gid;
}

Result<std::vector<gid_t>> user_groups(const UserInfo& user, gid_t primary) {
    if (user.name.empty())
        return std::vector<gid_t>{primary};
    int count = 64;
    for (;;) {
        std::vector<gid_t> groups(static_cast<size_t>(count));
        int n = count;
        g_name_lookups.fetch_add(1, std::memory_order_relaxed);
        if (::getgrouplist(user.name.c_str(), primary, groups.data(), &n) >= 0) {
            groups.resize(static_cast<size_t>(n));
            return groups;
        }
        if (n <= count || n > kMaxGroups)
            return make_error(fmt::format("failed to list the groups of user {}", user.name));
        count = n;
    }
}

Result<ChildIdentity> resolve_child_identity(const ChildConfig& c) {
    ChildIdentity out;
    if (!c.user.empty()) {
        auto u = lookup_user(c.user);
        if (!u)
            return u.error();
        out.user = *u;
        out.uid = u->uid;
        out.gid = u->gid;
        out.user_name =
            u->name.empty() ? std::to_string(u->uid) : fmt::format("{} ({})", u->name, u->uid);
    }
    if (!c.group.empty()) {
        auto g = lookup_group(c.group);
        if (!g)
            return g.error();
        out.gid = *g;
    }
    if (!c.supplementary_groups.empty()) {
        std::vector<gid_t> groups;
        for (const auto& spec : c.supplementary_groups) {
            auto g = lookup_group(spec);
            if (!g)
                return g.error();
            groups.push_back(*g);
        }
        out.groups = std::move(groups);
    } else if (out.user) {
        // As initgroups(3) with the primary group in effect (systemd's User= + Group=).
        auto groups = user_groups(*out.user, *out.gid);
        if (!groups)
            return groups.error();
        out.groups = std::move(*groups);
    } else if (out.gid) {
        out.groups = std::vector<gid_t>{}; // group alone: drop vigild's supplementary groups
    }
    return out;
}

Result<ExecEnv> prepare_exec_env(const ChildConfig& c) {
    auto identity = resolve_child_identity(c);
    if (!identity)
        return identity.error();
    return prepare_exec_env(c, *identity);
}

Result<ExecEnv> prepare_exec_env(const ChildConfig& c, const ChildIdentity& identity) {
    ExecEnv out;
    const std::optional<UserInfo>& user = identity.user;
    out.uid = identity.uid;
    out.gid = identity.gid;
    out.groups = identity.groups;
    out.user_name = identity.user_name;
    out.limits = c.limits;
    out.working_directory = c.working_directory;
    out.umask = c.umask;
    out.no_new_privileges = c.no_new_privileges;

    // The environment, in order of precedence (later wins); std::map keeps it sorted,
    // which makes /proc/PID/environ easy to read.
    std::map<std::string, std::string> env;
    if (c.inherit_env) {
        for (char** e = environ; e && *e; ++e) {
            std::string_view kv(*e);
            auto eq = kv.find('=');
            if (eq == std::string_view::npos)
                continue;
            env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
        }
    }
    if (user) {
        if (!user->name.empty()) {
            env["USER"] = user->name;
            env["LOGNAME"] = user->name;
        }
        env["HOME"] = user->home;
        if (!user->shell.empty())
            env["SHELL"] = user->shell;
    }
    for (const auto& spec : c.env_files) {
        auto entries = read_env_file(spec);
        if (!entries)
            return entries.error();
        for (auto& [k, v] : *entries)
            env[k] = v;
    }
    for (const auto& [k, v] : c.env)
        env[k] = v;
    for (const auto& [k, v] : env)
        if (!scrubbed(k))
            out.env.push_back(k + "=" + v);
    return out;
}

} // namespace vigil
