// Integration-test harness: runs the real vigild in a temp dir against the fake child and
// observes it through its log, its files and /proc. Every wait has a deadline; nothing
// sleeps and hopes.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace vt {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

inline constexpr Ms kDeadline = 20s; // generous: CI machines are slow and loaded

// Polls `pred` every few ms until it holds or `deadline` passes.
bool wait_until(const std::function<bool()>& pred, Ms deadline = kDeadline);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);
bool file_exists(const std::string& path);
bool process_alive(pid_t pid); // exists and is not a zombie
std::optional<pid_t> read_pid_file(const std::string& path);
int oom_score_of(pid_t pid);
std::vector<std::string> environ_of(pid_t pid);
std::vector<std::string> fd_targets_of(pid_t pid);
// Lines "<pid> <ns>" of a stamp file.
struct Stamp {
    pid_t pid;
    long long ns;
};
std::vector<Stamp> read_stamps(const std::string& path);
// Reaps any exited child of the test process (it is a subreaper, so orphans land here).
void reap_children();

// A fresh temp dir, removed (recursively) at the end of the test.
class TempDir {
public:
    TempDir();
    ~TempDir();
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// A process started by the test, stdout+stderr into a file.
class Process {
public:
    // `pre_exec` runs in the forked child just before execve: raw system calls only (the
    // test process may have threads).
    Process(const std::vector<std::string>& argv, const std::string& output_path,
            const std::map<std::string, std::string>& env_overrides = {},
            const std::vector<std::string>& env_removed = {},
            const std::function<void()>& pre_exec = {});
    ~Process(); // SIGKILLs and reaps the process if still running
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    void signal(int sig) const;
    // Waits for the exit; returns the exit code (128+N for a signal) or nullopt on timeout.
    std::optional<int> wait_exit(Ms deadline = kDeadline);
    bool exited() const { return exited_; }
    std::string output() const;
    // Waits until the output contains `needle` (after `from` bytes).
    bool wait_output(const std::string& needle, Ms deadline = kDeadline, size_t from = 0) const;

private:
    pid_t pid_ = -1;
    bool exited_ = false;
    int code_ = -1;
    std::string output_path_;
};

// A vigild instance in its own temp dir, with a config written by the test.
class Vigild {
public:
    // `config_body` is appended after the harness's [daemon] table (state/root dirs).
    explicit Vigild(const TempDir& dir, const std::string& config_body,
                    std::vector<std::string> extra_args = {},
                    const std::map<std::string, std::string>& env = {},
                    const std::string& log_name = "vigild.log",
                    const std::function<void()>& pre_exec = {});

    Process& process() { return *proc_; }
    std::string state_dir() const { return state_dir_; }
    std::string log() const { return proc_->output(); }
    bool wait_log(const std::string& needle, Ms deadline = kDeadline, size_t from = 0) const {
        return proc_->wait_output(needle, deadline, from);
    }
    // The child's pid from the pid file, once it exists.
    std::optional<pid_t> wait_child_pid(Ms deadline = kDeadline) const;

private:
    std::string state_dir_;
    std::unique_ptr<Process> proc_;
};

// The [daemon] table pointing into `dir` plus, when `with_child`, a [child] table running the
// fake child with `child_args` (health checks off unless the body configures them).
std::string daemon_table(const TempDir& dir);
std::string fake_child_table(const std::vector<std::string>& child_args,
                             const std::string& extra_child_keys = "");

void become_subreaper();

// Runs vigilctl to completion against the vigild of `dir` (its socket in dir/state).
struct CtlResult {
    int code;
    std::string out; // stdout and stderr
};
CtlResult run_vigilctl(const TempDir& dir, const std::vector<std::string>& args);

} // namespace vt
