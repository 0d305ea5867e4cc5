// vigil-loop-lag: vigild's event-loop lag and GetStatus latency during a restart storm.
//
//   vigil-loop-lag VIGILD [--child PATH] [--seconds N] [--clients N] [--log-level L]
//                  [--dir BASE] [--json]
//
// Runs VIGILD on a temp state dir under BASE (default /tmp; /dev/shm for a tmpfs, as
// /run/vigil is on most systems) with a child that exits at once (default /bin/true),
// health checks off and the shortest back-off (backoff_initial = backoff_max = 1ms, no
// start limit), so the child is restarted as fast as vigild can. Meanwhile N clients (default 8),
// each on its own connection, call GetStatus back to back. Prints the restart rate, the loop lag
// vigild reports (StatusReply.loop_lag: the lateness of its own timers) and the GetStatus latency
// seen by the clients (p50/p99/max). Every wait is bounded; vigild is ended by its pid. If vigild
// exits early, its log stays in the temp dir (the path is printed).
#include "vigil/v1/supervisor.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = vigil::v1;

constexpr auto kStartupWait = std::chrono::seconds(10);
constexpr auto kStopWait = std::chrono::seconds(10);
constexpr auto kCallDeadline = std::chrono::seconds(5);
constexpr auto kWarmup = std::chrono::seconds(1);

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "vigil-loop-lag: %s\n", msg.c_str());
    std::exit(1);
}

struct Options {
    std::string vigild;
    std::string child = "/bin/true";
    int seconds = 10;
    int clients = 8;
    std::string log_level = "info";
    std::string base = "/tmp";
    bool json = false;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                die(a + " needs a value");
            return argv[++i];
        };
        if (a == "--child")
            o.child = value();
        else if (a == "--seconds")
            o.seconds = std::atoi(value().c_str());
        else if (a == "--clients")
            o.clients = std::atoi(value().c_str());
        else if (a == "--log-level")
            o.log_level = value();
        else if (a == "--dir")
            o.base = value();
        else if (a == "--json")
            o.json = true;
        else if (a == "--help" || a == "-h") {
            std::puts("usage: vigil-loop-lag VIGILD [--child PATH] [--seconds N] [--clients N] "
                      "[--log-level L] [--dir BASE] [--json]");
            std::exit(0);
        } else if (o.vigild.empty() && a[0] != '-')
            o.vigild = a;
        else
            die("unknown argument " + a);
    }
    if (o.vigild.empty())
        die("usage: vigil-loop-lag VIGILD [--child PATH] [--seconds N] [--clients N] [--json]");
    if (o.seconds < 1 || o.clients < 1)
        die("--seconds and --clients must be at least 1");
    return o;
}

std::unique_ptr<v1::Supervisor::Stub> stub_for(const std::string& socket, int id) {
    grpc::ChannelArguments args;
    args.SetInt("vigil.bench.client", id); // a connection of its own per client
    return v1::Supervisor::NewStub(
        grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args));
}

bool get_status(v1::Supervisor::Stub& stub, v1::StatusReply& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    return stub.GetStatus(&ctx, v1::GetStatusRequest{}, &out).ok();
}

double pct(std::vector<double>& v, double p) {
    if (v.empty())
        return 0;
    auto k = static_cast<size_t>(std::max(0.0, std::ceil(p / 100.0 * double(v.size())) - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

} // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    std::string tmpl = o.base + "/vigil-loop-lag.XXXXXX";
    if (!::mkdtemp(tmpl.data()))
        die("mkdtemp in " + o.base + ": " + std::strerror(errno));
    const std::string dir = tmpl;
    const std::string state = dir + "/state", socket = state + "/vigild.sock";
    ::mkdir(state.c_str(), 0700);
    {
        std::ofstream cfg(dir + "/vigild.toml");
        cfg << "[daemon]\nstate_dir = \"" << state << "\"\nroot_dir = \"" << dir
            << "/root\"\nlog_level = \"" << o.log_level << "\"\n"
            << "[child]\nbinary = \"" << o.child
            << "\"\nconfig_file = \"\"\nlog_level_flag = \"\"\n"
            << "[health]\nkind = \"none\"\n"
            << "[restart]\nbackoff_initial = \"1ms\"\nbackoff_max = \"1ms\"\n"
            << "start_limit_burst = 1000000000\nstart_limit_interval = \"1ms\"\n";
    }
    const pid_t pid = ::fork();
    if (pid < 0)
        die(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        int log = ::open((dir + "/vigild.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(log, 2);
        ::execl(o.vigild.c_str(), o.vigild.c_str(), "--config", (dir + "/vigild.toml").c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    auto stop_vigild = [&] {
        ::kill(pid, SIGTERM);
        const auto deadline = Clock::now() + kStopWait;
        int status;
        while (::waitpid(pid, &status, WNOHANG) == 0) {
            if (Clock::now() > deadline) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::filesystem::remove_all(dir);
    };

    auto probe = stub_for(socket, -1);
    v1::StatusReply first;
    const auto up_deadline = Clock::now() + kStartupWait;
    while (!get_status(*probe, first)) {
        int status;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            std::fprintf(stderr, "vigild exited early; its log: %s/vigild.log\n", dir.c_str());
            return 1;
        }
        if (Clock::now() > up_deadline) {
            stop_vigild();
            die("vigild did not answer GetStatus within 10s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(kWarmup);
    v1::StatusReply before;
    if (!get_status(*probe, before)) {
        stop_vigild();
        die("GetStatus failed after the warm-up");
    }

    std::atomic<bool> done{false};
    std::atomic<unsigned> failures{0};
    std::vector<std::vector<double>> lat(static_cast<size_t>(o.clients));
    std::vector<std::thread> threads;
    for (int c = 0; c < o.clients; ++c)
        threads.emplace_back([&, c] {
            auto stub = stub_for(socket, c);
            v1::StatusReply r;
            get_status(*stub, r); // connect before measuring
            while (!done.load()) {
                const auto t0 = Clock::now();
                const bool ok = get_status(*stub, r);
                const auto t1 = Clock::now();
                if (!ok) {
                    ++failures;
                    continue;
                }
                lat[static_cast<size_t>(c)].push_back(
                    std::chrono::duration<double, std::micro>(t1 - t0).count());
            }
        });
    std::this_thread::sleep_for(std::chrono::seconds(o.seconds));
    done = true;
    for (auto& t : threads)
        t.join();
    v1::StatusReply after;
    const bool got = get_status(*probe, after);
    stop_vigild();
    if (!got)
        die("GetStatus failed at the end of the storm");

    std::vector<double> all;
    for (auto& v : lat)
        all.insert(all.end(), v.begin(), v.end());
    const double restarts =
        double(after.restart_count() - before.restart_count()) / double(o.seconds);
    const auto& lag = after.loop_lag();
    const double s50 = pct(all, 50), s99 = pct(all, 99);
    const double smax = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
    if (o.json) {
        std::printf("{\"seconds\": %d, \"clients\": %d, \"restarts_per_s\": %.1f, "
                    "\"loop_lag_samples\": %llu, \"loop_lag_window\": %u, "
                    "\"loop_lag_p50_ms\": %.3f, \"loop_lag_p99_ms\": %.3f, "
                    "\"loop_lag_max_ms\": %.3f, \"status_calls\": %zu, "
                    "\"status_failures\": %u, \"status_p50_ms\": %.3f, \"status_p99_ms\": %.3f, "
                    "\"status_max_ms\": %.3f}\n",
                    o.seconds, o.clients, restarts,
                    static_cast<unsigned long long>(lag.samples() - before.loop_lag().samples()),
                    lag.window(), lag.p50_us() / 1e3, lag.p99_us() / 1e3, lag.max_us() / 1e3,
                    all.size(), failures.load(), s50 / 1e3, s99 / 1e3, smax / 1e3);
        return 0;
    }
    std::printf("restart storm: %d s, %.0f restarts/s, %d status clients\n", o.seconds, restarts,
                o.clients);
    std::printf("loop lag (last %u timer firings of %llu): p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
                lag.window(),
                static_cast<unsigned long long>(lag.samples() - before.loop_lag().samples()),
                lag.p50_us() / 1e3, lag.p99_us() / 1e3, lag.max_us() / 1e3);
    std::printf("GetStatus (%zu calls, %u failed): p50 %.3f ms  p99 %.3f ms  max %.3f ms\n",
                all.size(), failures.load(), s50 / 1e3, s99 / 1e3, smax / 1e3);
    return 0;
}
