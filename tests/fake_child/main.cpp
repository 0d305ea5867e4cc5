// fake_child: the daemon that vigil's integration tests supervise in place of containerd.
//
// It serves grpc.health.v1.Health on a unix socket and misbehaves on cue: starts slowly,
// stops serving, hangs, crashes, exits, ignores SIGTERM. Every timed behaviour is measured
// from the process start, so a restarted fake child begins healthy again. See README.md
// next to this file for the flags.

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/health/v1/health.pb.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr int kBadFlagsStatus = 2;
constexpr int kSetupFailedStatus = 1;
// A detached grandchild left behind by a test that forgot it dies on SIGALRM after this.
constexpr unsigned kGrandchildLifetimeSeconds = 600;
constexpr mode_t kAppendFileMode = 0644;

struct Options {
    std::optional<std::string> config;
    std::optional<std::string> log_level;
    std::optional<std::string> stamp_file;
    std::optional<std::string> socket;
    std::optional<std::string> signal_file;
    std::vector<std::string> services;
    std::optional<Millis> slow_start;
    std::optional<Millis> not_serving_after;
    std::optional<Millis> not_serving_for;
    std::optional<Millis> hang_after;
    std::optional<Millis> crash_after;
    std::optional<Millis> exit_after;
    std::optional<Millis> term_delay;
    std::optional<int> exit_code;
    bool unknown_status = false;
    bool ignore_term = false;
    bool double_fork = false;
    bool print_env = false;
    std::optional<long long> print_lines;
    bool print_raw = false;
    std::optional<long long> flood_mib;
    std::optional<std::string> hog_cgroup;
    bool help = false;
};

constexpr std::string_view kUsage =
    "usage: fake_child [--config FILE] [--log-level L] [--stamp-file PATH] [--socket PATH]\n"
    "                  [--service NAME]... [--slow-start MS] [--not-serving-after MS]\n"
    "                  [--not-serving-for MS] [--unknown-status] [--hang-after MS]\n"
    "                  [--crash-after MS] [--exit-after MS] [--exit-code N] [--ignore-term]\n"
    "                  [--term-delay MS] [--signal-file PATH] [--double-fork] [--print-env]\n"
    "                  [--print-lines N] [--print-raw] [--flood MIB]\n"
    "                  [--hog-in-cgroup DIR]  (join that cgroup v1 group, then allocate\n"
    "                                          memory until the OOM killer strikes)\n";

// Writes all of `data`, retrying short writes; errors are dropped (there is nowhere to
// report them).
void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
}

// One write() per line, so lines from different threads never interleave.
void log_line(std::string_view message) {
    std::string line = "fake_child[" + std::to_string(::getpid()) + "]: ";
    line += message;
    line += '\n';
    write_all(STDERR_FILENO, line);
}

// Appends `line` with a single write() on an O_APPEND fd: concurrent writers (several fake
// children sharing a stamp file) never split each other's lines.
void append_line(const std::string& path, const std::string& line) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, kAppendFileMode);
    if (fd < 0) {
        log_line("failed to open " + path + ": " + std::strerror(errno));
        return;
    }
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        log_line("failed to append to " + path + ": " + std::strerror(errno));
    }
    ::close(fd);
}

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string_view signal_name(int sig) {
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    default:
        return "SIG?";
    }
}

// The stamp is written before the flags are fully parsed, so even a run that fails on bad
// flags is recorded.
std::optional<std::string> find_stamp_file(int argc, char** argv) {
    constexpr std::string_view flag = "--stamp-file";
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == flag && i + 1 < argc) {
            return std::string(argv[i + 1]);
        }
        if (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '=') {
            return std::string(arg.substr(flag.size() + 1));
        }
    }
    return std::nullopt;
}

std::optional<long long> parse_integer(std::string_view text, long long min, long long max) {
    long long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
        return std::nullopt;
    }
    return value;
}

// Parses argv into `opts`. Accepts `--flag VALUE` and `--flag=VALUE`. On failure returns
// false with `error` saying which argument is wrong.
bool parse_options(int argc, char** argv, Options& opts, std::string& error) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::optional<std::string_view> inline_value;
        if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            inline_value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        }
        auto value = [&]() -> std::optional<std::string> {
            if (inline_value) {
                return std::string(*inline_value);
            }
            if (i + 1 >= argc) {
                error = std::string(arg) + " needs a value";
                return std::nullopt;
            }
            return std::string(argv[++i]);
        };
        auto millis = [&](std::optional<Millis>& out) {
            const auto text = value();
            if (!text) {
                return false;
            }
            const auto ms = parse_integer(*text, 0, 365LL * 24 * 3600 * 1000);
            if (!ms) {
                error = std::string(arg) + ": '" + *text + "' is not a number of milliseconds";
                return false;
            }
            out = Millis(*ms);
            return true;
        };
        auto text = [&](std::optional<std::string>& out) {
            out = value();
            return out.has_value();
        };
        auto flag = [&](bool& out) {
            if (inline_value) {
                error = std::string(arg) + " takes no value";
                return false;
            }
            out = true;
            return true;
        };

        bool ok = false;
        if (arg == "--config") {
            ok = text(opts.config);
        } else if (arg == "--log-level") {
            ok = text(opts.log_level);
        } else if (arg == "--stamp-file") {
            ok = text(opts.stamp_file);
        } else if (arg == "--socket") {
            ok = text(opts.socket);
        } else if (arg == "--signal-file") {
            ok = text(opts.signal_file);
        } else if (arg == "--service") {
            std::optional<std::string> name;
            ok = text(name);
            if (ok) {
                opts.services.push_back(*name);
            }
        } else if (arg == "--slow-start") {
            ok = millis(opts.slow_start);
        } else if (arg == "--not-serving-after") {
            ok = millis(opts.not_serving_after);
        } else if (arg == "--not-serving-for") {
            ok = millis(opts.not_serving_for);
        } else if (arg == "--hang-after") {
            ok = millis(opts.hang_after);
        } else if (arg == "--crash-after") {
            ok = millis(opts.crash_after);
        } else if (arg == "--exit-after") {
            ok = millis(opts.exit_after);
        } else if (arg == "--term-delay") {
            ok = millis(opts.term_delay);
        } else if (arg == "--exit-code") {
            const auto code_text = value();
            if (code_text) {
                const auto code = parse_integer(*code_text, 0, 255);
                if (code) {
                    opts.exit_code = static_cast<int>(*code);
                    ok = true;
                } else {
                    error = "--exit-code: '" + *code_text + "' is not an integer in 0..255";
                }
            }
        } else if (arg == "--unknown-status") {
            ok = flag(opts.unknown_status);
        } else if (arg == "--ignore-term") {
            ok = flag(opts.ignore_term);
        } else if (arg == "--double-fork") {
            ok = flag(opts.double_fork);
        } else if (arg == "--print-env") {
            ok = flag(opts.print_env);
        } else if (arg == "--print-raw") {
            ok = flag(opts.print_raw);
        } else if (arg == "--print-lines" || arg == "--flood") {
            auto& out = arg == "--print-lines" ? opts.print_lines : opts.flood_mib;
            if (const auto count_text = value()) {
                out = parse_integer(*count_text, 0, 1'000'000'000);
                ok = out.has_value();
                if (!ok) {
                    error = std::string(arg) + ": '" + *count_text + "' is not a count";
                }
            }
        } else if (arg == "--hog-in-cgroup") {
            ok = text(opts.hog_cgroup);
        } else if (arg == "--help" || arg == "-h") {
            ok = flag(opts.help);
        } else {
            error = "unknown argument '" + std::string(argv[i]) + "'";
        }
        if (!ok) {
            return false;
        }
    }
    if (opts.not_serving_for && !opts.not_serving_after) {
        error = "--not-serving-for needs --not-serving-after";
        return false;
    }
    return true;
}

enum class Answer { serving, not_serving, unknown, hang };

// What a Check for a known service gets `elapsed` after the process started.
Answer answer_at(const Options& opts, Millis elapsed) {
    if (opts.hang_after && elapsed >= *opts.hang_after) {
        return Answer::hang;
    }
    if (opts.not_serving_after && elapsed >= *opts.not_serving_after &&
        (!opts.not_serving_for || elapsed < *opts.not_serving_after + *opts.not_serving_for)) {
        return Answer::not_serving;
    }
    return opts.unknown_status ? Answer::unknown : Answer::serving;
}

// A Check that is never answered. The client sees nothing until its own deadline; once it
// gives up, gRPC cancels the call and only then is it finished (every reactor must be
// finished for the server to release it). The process never calls Server::Shutdown, so
// unfinished calls cannot block its exit.
class UnansweredCall final : public grpc::ServerUnaryReactor {
public:
    explicit UnansweredCall(bool verbose) : verbose_(verbose) {}

    void OnCancel() override {
        if (verbose_) {
            log_line("hung check cancelled by the client");
        }
        Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

private:
    bool verbose_;
};

class HealthService final : public grpc::health::v1::Health::CallbackService {
public:
    HealthService(const Options& opts, Clock::time_point start) : opts_(opts), start_(start) {}

    // Runs on a gRPC thread; reads only immutable options and the clock.
    grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                    const HealthCheckRequest* request,
                                    HealthCheckResponse* response) override {
        const auto elapsed = std::chrono::duration_cast<Millis>(Clock::now() - start_);
        const Answer answer = answer_at(opts_, elapsed);
        const bool known = known_service(request->service());
        if (verbose()) {
            log_line(
                "check service='" + request->service() + "' at " + std::to_string(elapsed.count()) +
                "ms: " + (answer != Answer::hang && !known ? "NOT_FOUND" : answer_name(answer)));
        }
        if (answer == Answer::hang) {
            return new UnansweredCall(verbose());
        }
        auto* reactor = ctx->DefaultReactor();
        if (!known) {
            reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
            return reactor;
        }
        response->set_status(answer == Answer::serving       ? HealthCheckResponse::SERVING
                             : answer == Answer::not_serving ? HealthCheckResponse::NOT_SERVING
                                                             : HealthCheckResponse::UNKNOWN);
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }

private:
    bool known_service(const std::string& name) const {
        return name.empty() || std::find(opts_.services.begin(), opts_.services.end(), name) !=
                                   opts_.services.end();
    }

    bool verbose() const {
        return opts_.log_level && (*opts_.log_level == "debug" || *opts_.log_level == "trace");
    }

    static std::string answer_name(Answer answer) {
        switch (answer) {
        case Answer::serving:
            return "SERVING";
        case Answer::not_serving:
            return "NOT_SERVING";
        case Answer::unknown:
            return "UNKNOWN";
        case Answer::hang:
            return "no answer (hung)";
        }
        return "?";
    }

    const Options& opts_;
    Clock::time_point start_;
};

// Shared between the main thread (which binds the socket) and the threads that exit.
struct Runtime {
    const Options& opts;
    Clock::time_point start;
    std::atomic<bool> socket_bound{false};
    std::atomic<bool> exiting{false};
};

[[noreturn]] void clean_exit(Runtime& rt, int status) {
    if (rt.socket_bound.load() && rt.opts.socket) {
        ::unlink(rt.opts.socket->c_str());
    }
    log_line("exiting with status " + std::to_string(status));
    ::_exit(status);
}

[[noreturn]] void crash() {
    log_line("crashing with SIGABRT");
    // No core file: a test run should not litter the disk.
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGABRT, SIG_DFL);
    sigset_t abrt;
    sigemptyset(&abrt);
    sigaddset(&abrt, SIGABRT);
    ::pthread_sigmask(SIG_UNBLOCK, &abrt, nullptr);
    ::raise(SIGABRT);
    std::abort();
}

void on_termination_signal(Runtime& rt, int sig) {
    if (sig == SIGTERM && rt.opts.ignore_term) {
        log_line("ignoring SIGTERM");
        return;
    }
    if (rt.exiting.exchange(true)) {
        log_line(std::string(signal_name(sig)) + " while already exiting");
        return;
    }
    if (!rt.opts.term_delay) {
        clean_exit(rt, 0);
    }
    log_line(std::string(signal_name(sig)) + ": exiting in " +
             std::to_string(rt.opts.term_delay->count()) + "ms");
    // Keep the signal loop running during the delay so later signals are still recorded.
    std::thread([&rt] {
        std::this_thread::sleep_for(*rt.opts.term_delay);
        clean_exit(rt, 0);
    }).detach();
}

// Runs on the signal thread. The handled signals are blocked in every thread, so sigwait
// here is the only place they are delivered.
[[noreturn]] void run_signal_loop(Runtime& rt, const sigset_t& handled) {
    for (;;) {
        int sig = 0;
        if (const int rc = ::sigwait(&handled, &sig); rc != 0) {
            log_line(std::string("sigwait failed: ") + std::strerror(rc));
            continue;
        }
        if (rt.opts.signal_file) {
            append_line(*rt.opts.signal_file, std::string(signal_name(sig)) + "\n");
        }
        switch (sig) {
        case SIGTERM:
        case SIGINT:
            on_termination_signal(rt, sig);
            break;
        default:
            log_line("received " + std::string(signal_name(sig)));
            break;
        }
    }
}

// Starts a process that is not our child: an intermediate child forks it and exits at
// once, so it is reparented (to init or the nearest subreaper) like a daemonized shim. It
// runs in its own session with stdio on /dev/null, no other descriptors, and sleeps
// until killed. Called before any thread exists, so fork is safe. Returns its pid, or -1.
pid_t start_detached_grandchild() {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        log_line(std::string("pipe failed: ") + std::strerror(errno));
        return -1;
    }
    const pid_t intermediate = ::fork();
    if (intermediate < 0) {
        log_line(std::string("fork failed: ") + std::strerror(errno));
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        return -1;
    }
    if (intermediate == 0) {
        ::close(pipe_fds[0]);
        const pid_t grandchild = ::fork();
        if (grandchild != 0) {
            ::_exit(grandchild < 0 ? 1 : 0);
        }
        ::setsid();
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        const pid_t self = ::getpid();
        (void)!::write(pipe_fds[1], &self, sizeof self);
        // Hold no inherited descriptor (a test's pipe, vigild's capture pipe) open.
        ::close_range(STDERR_FILENO + 1, ~0U, 0);
        const int devnull = ::open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            ::dup2(devnull, STDIN_FILENO);
            ::dup2(devnull, STDOUT_FILENO);
            ::dup2(devnull, STDERR_FILENO);
            if (devnull > STDERR_FILENO) {
                ::close(devnull);
            }
        }
        ::alarm(kGrandchildLifetimeSeconds);
        for (;;) {
            ::pause();
        }
    }
    ::close(pipe_fds[1]);
    int status = 0;
    while (::waitpid(intermediate, &status, 0) < 0 && errno == EINTR) {
    }
    pid_t grandchild = -1;
    ssize_t n = 0;
    do {
        n = ::read(pipe_fds[0], &grandchild, sizeof grandchild);
    } while (n < 0 && errno == EINTR);
    ::close(pipe_fds[0]);
    return n == static_cast<ssize_t>(sizeof grandchild) ? grandchild : -1;
}

void start_timer(Millis due_after_start, Clock::time_point start, void (*action)(Runtime&),
                 Runtime& rt) {
    std::thread([=, &rt] {
        std::this_thread::sleep_until(start + due_after_start);
        action(rt);
    }).detach();
}

// --print-lines, --print-raw, --flood: output on stdout for vigild's capture. Runs on a
// thread of its own, so a reader that stalls the writes does not stall signal handling.
void print_output(const Options& opts) {
    if (opts.print_raw) {
        // ESC sequences, CR, NUL, DEL, invalid UTF-8 (a lone 0xff, a truncated sequence),
        // a C1 control (U+009B) and valid UTF-8 (e with acute accent), on one line.
        static constexpr char kRaw[] = "raw: \x1b[31mred\x1b[0m cr\rnul\0del\x7f bad\xff "
                                       "trunc\xe2\x82 c1\xc2\x9b caf\xc3\xa9 tab\tend\n";
        write_all(STDOUT_FILENO, std::string_view(kRaw, sizeof kRaw - 1));
    }
    if (opts.print_lines) {
        for (long long i = 1; i <= *opts.print_lines; ++i) {
            write_all(STDOUT_FILENO, "line " + std::to_string(i) + " of " +
                                         std::to_string(*opts.print_lines) +
                                         " abcdefghijklmnopqrstuvwxyz0123456789\n");
        }
        log_line("printed " + std::to_string(*opts.print_lines) + " lines");
    }
    if (opts.flood_mib) {
        constexpr size_t kLineBytes = 100;
        constexpr size_t kChunkBytes = 64 * 1024;
        std::string chunk;
        while (chunk.size() + kLineBytes <= kChunkBytes) {
            chunk += std::string(kLineBytes - 1, 'x') + '\n';
        }
        const long long total = *opts.flood_mib * 1024 * 1024;
        const auto began = Clock::now();
        long long written = 0;
        while (written < total) {
            const auto n =
                std::min<long long>(total - written, static_cast<long long>(chunk.size()));
            write_all(STDOUT_FILENO, std::string_view(chunk).substr(0, static_cast<size_t>(n)));
            written += n;
        }
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began);
        const double mb_per_s =
            ms.count() > 0 ? static_cast<double>(written) / 1e3 / ms.count() : 0;
        log_line("flood: " + std::to_string(written) + " bytes in " + std::to_string(ms.count()) +
                 " ms (" + std::to_string(static_cast<long long>(mb_per_s)) + " MB/s)");
    }
}

} // namespace

int main(int argc, char** argv) {
    const auto start = Clock::now();
    // Blocked first of all (before the stamp, which tests take as "the child is up", and
    // before any thread is created, so gRPC's threads inherit the mask and the signal
    // thread's sigwait is the only receiver).
    sigset_t handled;
    sigemptyset(&handled);
    for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP}) {
        sigaddset(&handled, sig);
    }
    if (const int rc = ::pthread_sigmask(SIG_BLOCK, &handled, nullptr); rc != 0) {
        log_line(std::string("pthread_sigmask failed: ") + std::strerror(rc));
        return kSetupFailedStatus;
    }

    if (const auto stamp_file = find_stamp_file(argc, argv)) {
        append_line(*stamp_file,
                    std::to_string(::getpid()) + " " + std::to_string(monotonic_ns()) + "\n");
    }

    Options opts;
    if (std::string error; !parse_options(argc, argv, opts, error)) {
        log_line(error);
        write_all(STDERR_FILENO, kUsage);
        return kBadFlagsStatus;
    }
    if (opts.help) {
        write_all(STDOUT_FILENO, kUsage);
        return 0;
    }

    log_line("started; config=" + opts.config.value_or("(none)") +
             " log-level=" + opts.log_level.value_or("(none)"));
    if (opts.print_env) {
        for (char** env = environ; *env != nullptr; ++env) {
            log_line(std::string("env ") + *env);
        }
    }
    if (opts.exit_code && !opts.exit_after) {
        log_line("exiting with status " + std::to_string(*opts.exit_code));
        ::_exit(*opts.exit_code);
    }
    if (opts.hog_cgroup) {
        // Into the memory cgroup the test set up, then memory until its limit is hit and
        // the kernel's OOM killer ends this process.
        const std::string procs = *opts.hog_cgroup + "/cgroup.procs";
        const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
        const std::string pid = std::to_string(::getpid());
        if (fd < 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) {
            log_line("cannot join " + procs + ": " + std::strerror(errno));
            return 1;
        }
        ::close(fd);
        log_line("hogging memory in " + *opts.hog_cgroup);
        std::vector<char*> held;
        for (;;) {
            constexpr std::size_t kStep = 1 << 20;
            char* p = static_cast<char*>(std::malloc(kStep));
            if (p == nullptr)
                continue;
            std::memset(p, 1, kStep); // touch it: resident, anonymous
            held.push_back(p);
        }
    }
    if (opts.double_fork) {
        const pid_t grandchild = start_detached_grandchild();
        write_all(STDOUT_FILENO, "grandchild " + std::to_string(grandchild) + "\n");
    }

    Runtime rt{opts, start};
    std::thread signal_thread([&rt, &handled] { run_signal_loop(rt, handled); });
    if (opts.print_raw || opts.print_lines || opts.flood_mib) {
        std::thread([opts] { print_output(opts); }).detach();
    }

    if (opts.crash_after) {
        start_timer(
            *opts.crash_after, start, [](Runtime&) { crash(); }, rt);
    }
    if (opts.exit_after) {
        start_timer(
            *opts.exit_after, start,
            [](Runtime& r) {
                const int status = r.opts.exit_code.value_or(0);
                log_line("exit-after: exiting with status " + std::to_string(status));
                ::_exit(status);
            },
            rt);
    }

    std::unique_ptr<HealthService> service;
    std::unique_ptr<grpc::Server> server;
    if (opts.socket) {
        // A stale socket from an earlier run must not accept connections during a slow start.
        ::unlink(opts.socket->c_str());
        if (opts.slow_start) {
            log_line("slow start: serving in " + std::to_string(opts.slow_start->count()) + "ms");
            std::this_thread::sleep_until(start + *opts.slow_start);
        }
        ::unlink(opts.socket->c_str());
        // Before the server exists: a health answer can only come after this line, so a
        // test can check that vigild's `-> running` follows it. ("serving ..." below comes
        // after BuildAndStart, when a fast probe may already have been answered.)
        log_line("starting to serve grpc.health.v1.Health on unix:" + *opts.socket);
        service = std::make_unique<HealthService>(opts, start);
        grpc::ServerBuilder builder;
        builder.AddListeningPort("unix:" + *opts.socket, grpc::InsecureServerCredentials());
        builder.RegisterService(service.get());
        server = builder.BuildAndStart();
        if (!server) {
            log_line("failed to serve on unix:" + *opts.socket +
                     " (is the directory there and the path under 108 bytes?)");
            ::_exit(kSetupFailedStatus);
        }
        rt.socket_bound.store(true);
        log_line("serving grpc.health.v1.Health on unix:" + *opts.socket);
    }

    // Every exit goes through _exit from another thread: the server is never shut down,
    // so a hung call cannot hold up an exit.
    signal_thread.join();
    return 0;
}
