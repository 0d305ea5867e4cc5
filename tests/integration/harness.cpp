#include "harness.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace vt {

namespace {
constexpr auto kPollInterval = 5ms;
}

bool wait_until(const std::function<bool()>& pred, Ms deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        if (pred())
            return true;
        if (std::chrono::steady_clock::now() >= end)
            return false;
        std::this_thread::sleep_for(kPollInterval);
    }
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_file(const std::string& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out)
        throw std::runtime_error("cannot write " + path);
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

bool process_alive(pid_t pid) {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty())
        return false;
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size())
        return false;
    char state = stat[close + 2];
    return state != 'Z' && state != 'X';
}

std::optional<pid_t> read_pid_file(const std::string& path) {
    std::string s = read_file(path);
    if (s.empty() || s.back() != '\n')
        return std::nullopt;
    try {
        return static_cast<pid_t>(std::stol(s));
    } catch (...) {
        return std::nullopt;
    }
}

int oom_score_of(pid_t pid) {
    return std::stoi(read_file("/proc/" + std::to_string(pid) + "/oom_score_adj"));
}

std::vector<std::string> environ_of(pid_t pid) {
    std::string raw = read_file("/proc/" + std::to_string(pid) + "/environ");
    std::vector<std::string> out;
    size_t start = 0;
    while (start < raw.size()) {
        size_t end = raw.find('\0', start);
        if (end == std::string::npos)
            end = raw.size();
        out.push_back(raw.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

std::vector<std::string> fd_targets_of(pid_t pid) {
    std::vector<std::string> out;
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::error_code ec2;
        auto target = std::filesystem::read_symlink(e.path(), ec2);
        out.push_back(e.path().filename().string() + " -> " + target.string());
    }
    return out;
}

std::vector<Stamp> read_stamps(const std::string& path) {
    std::vector<Stamp> out;
    std::istringstream in(read_file(path));
    Stamp s;
    while (in >> s.pid >> s.ns)
        out.push_back(s);
    return out;
}

void reap_children() {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

void become_subreaper() {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        throw std::runtime_error("prctl(PR_SET_CHILD_SUBREAPER) failed");
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/vigil-test.XXXXXX";
    if (!::mkdtemp(tmpl))
        throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

Process::Process(const std::vector<std::string>& argv, const std::string& output_path,
                 const std::map<std::string, std::string>& env_overrides,
                 const std::vector<std::string>& env_removed, const std::function<void()>& pre_exec)
    : output_path_(output_path) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        std::string kv(*e);
        std::string name = kv.substr(0, kv.find('='));
        bool drop = env_overrides.count(name) > 0;
        for (const auto& r : env_removed)
            drop = drop || r == name;
        if (!drop)
            env.push_back(kv);
    }
    for (const auto& [k, v] : env_overrides)
        env.push_back(k + "=" + v);
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv)
        cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : env)
        cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0)
        throw std::runtime_error("cannot open " + output_path);
    pid_ = ::fork();
    if (pid_ < 0)
        throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
        int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        if (pre_exec)
            pre_exec();
        ::execve(cargv[0], cargv.data(), cenv.data());
        ::_exit(127);
    }
    ::close(out);
}

Process::~Process() {
    if (std::getenv("VIGIL_TEST_SHOW_OUTPUT"))
        std::fprintf(stderr, "---- output of pid %d ----\n%s----\n", pid_, output().c_str());
    if (!exited_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

void Process::signal(int sig) const {
    if (!exited_)
        ::kill(pid_, sig);
}

std::optional<int> Process::wait_exit(Ms deadline) {
    if (exited_)
        return code_;
    bool done = wait_until(
        [&] {
            int status;
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r != pid_)
                return false;
            exited_ = true;
            code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return true;
        },
        deadline);
    if (!done)
        return std::nullopt;
    return code_;
}

std::string Process::output() const {
    return read_file(output_path_);
}

bool Process::wait_output(const std::string& needle, Ms deadline, size_t from) const {
    return wait_until(
        [&] {
            std::string out = output();
            return out.size() > from && out.find(needle, from) != std::string::npos;
        },
        deadline);
}

std::string daemon_table(const TempDir& dir) {
    return "[daemon]\nstate_dir = \"" + dir / "state" + "\"\nroot_dir = \"" + dir / "root" +
           "\"\nlog_level = \"debug\"\n";
}

std::string fake_child_table(const std::vector<std::string>& child_args,
                             const std::string& extra_child_keys) {
    std::string args;
    for (const auto& a : child_args)
        args += (args.empty() ? "" : ", ") + std::string("\"") + a + "\"";
    return "[child]\nbinary = \"" FAKE_CHILD_PATH "\"\nargs = [" + args + "]\n" + extra_child_keys +
           "\n";
}

Vigild::Vigild(const TempDir& dir, const std::string& config_body,
               std::vector<std::string> extra_args, const std::map<std::string, std::string>& env,
               const std::string& log_name, const std::function<void()>& pre_exec)
    : state_dir_(dir / "state") {
    const std::string conf = dir / "vigild.toml";
    if (!file_exists(conf))
        write_file(conf, daemon_table(dir) + config_body);
    std::vector<std::string> argv{VIGILD_PATH, "--config", conf};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    proc_ =
        std::make_unique<Process>(argv, dir / log_name, env, std::vector<std::string>{}, pre_exec);
}

std::optional<pid_t> Vigild::wait_child_pid(Ms deadline) const {
    std::optional<pid_t> pid;
    wait_until(
        [&] {
            pid = read_pid_file(state_dir_ + "/child.pid");
            return pid.has_value();
        },
        deadline);
    return pid;
}

CtlResult run_vigilctl(const TempDir& dir, const std::vector<std::string>& args) {
    static int n = 0;
    std::vector<std::string> argv{VIGILCTL_PATH, "--socket", dir / "state/vigild.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, dir / ("vigilctl." + std::to_string(++n) + ".out"));
    const auto code = p.wait_exit();
    return {code.value_or(-1), p.output()};
}

} // namespace vt
