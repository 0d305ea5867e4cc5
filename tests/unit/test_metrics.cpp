// The Prometheus metrics (issue 11, item 1): names, values, and counters that never go
// backwards.
#include "vigil/config.hpp"
#include "vigil/metrics.hpp"

#include <catch2/catch.hpp>

#include <csignal>

using namespace vigil;
using Catch::Matchers::Contains;

namespace {

StatusSnapshot running(unsigned restarts) {
    StatusSnapshot s;
    s.state = "running";
    s.pid = 4242;
    s.started_at = SystemTime(std::chrono::seconds(1'714'564'800));
    s.restart_count = restarts;
    s.oom_actual = 500;
    return s;
}

} // namespace

TEST_CASE("metrics: the child's state, restarts, start time and OOM score", "[unit][metrics]") {
    Metrics m;
    std::string t = m.text();
    CHECK_THAT(t, Contains("vigil_child_up 0\n"));
    CHECK_THAT(t, Contains("vigil_child_state{state=\"stopped\"} 1\n"));
    CHECK_THAT(t, Contains("vigil_build_info{version=\"" VIGIL_VERSION "\"} 1\n"));
    CHECK_THAT(t, Contains("# TYPE vigil_health_check_duration_seconds histogram"));

    m.update(running(2));
    t = m.text();
    CHECK_THAT(t, Contains("vigil_child_up 1\n"));
    CHECK_THAT(t, Contains("vigil_child_state{state=\"running\"} 1\n"));
    CHECK_THAT(t, Contains("vigil_child_state{state=\"stopped\"} 0\n"));
    CHECK_THAT(t, Contains("vigil_child_restarts_total 2\n"));
    CHECK_THAT(t, Contains("vigil_child_start_time_seconds 1714564800\n"));
    CHECK_THAT(t, Contains("vigil_child_oom_score_adj 500\n"));

    // The status' counter starts again (a new vigild would; a reload does not, but the
    // metric must not care): the metric never goes backwards, and counts on from there.
    m.update(running(0));
    CHECK_THAT(m.text(), Contains("vigil_child_restarts_total 2\n"));
    m.update(running(1));
    CHECK_THAT(m.text(), Contains("vigil_child_restarts_total 3\n"));

    StatusSnapshot gone;
    gone.state = "backoff";
    gone.restart_count = 1;
    m.update(gone);
    t = m.text();
    CHECK_THAT(t, Contains("vigil_child_up 0\n"));
    CHECK_THAT(t, Contains("vigil_child_state{state=\"backoff\"} 1\n"));
    CHECK_THAT(t, Contains("vigil_child_start_time_seconds 0\n"));
}

TEST_CASE("metrics: health checks by result and their latency; OOM kills", "[unit][metrics]") {
    Metrics m;
    m.observe_health(HealthOutcome{HealthResult::serving, ""}, std::chrono::milliseconds(2));
    m.observe_health(HealthOutcome{HealthResult::serving, ""}, std::chrono::milliseconds(3));
    m.observe_health(HealthOutcome{HealthResult::deadline_exceeded, ""},
                     std::chrono::milliseconds(3000));
    const std::string t = m.text();
    CHECK_THAT(t, Contains("vigil_health_checks_total{result=\"serving\"} 2\n"));
    CHECK_THAT(t, Contains("vigil_health_checks_total{result=\"deadline_exceeded\"} 1\n"));
    CHECK_THAT(t, Contains("vigil_health_check_duration_seconds_count 3\n"));
    CHECK_THAT(t, Contains("vigil_health_check_duration_seconds_bucket{le=\"0.0025\"} 1\n"));
    CHECK_THAT(t, Contains("vigil_health_check_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    CHECK_THAT(t, Contains("vigil_health_check_duration_seconds_bucket{le=\"5\"} 3\n"));

    ExitStatus killed{ExitStatus::Kind::signaled, SIGKILL};
    m.on_exit(killed);
    CHECK_THAT(m.text(), Contains("vigil_child_oom_kills_total 0\n"));
    killed.oom_kill = OomKill{4242, "containerd", 1024, 2048, 500, false};
    m.on_exit(killed);
    CHECK_THAT(m.text(), Contains("vigil_child_oom_kills_total 1\n"));
}

TEST_CASE("metrics: [metrics] listen takes literal addresses only", "[unit][metrics][config]") {
    CHECK_FALSE(metrics_listen_problem("127.0.0.1:9464"));
    CHECK_FALSE(metrics_listen_problem("0.0.0.0:1"));
    CHECK_FALSE(metrics_listen_problem("[::1]:65535"));
    for (const char* bad :
         {"9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:94x",
          "::1:9464", "[::1]", ":9464", "[nope]:1", "1.2.3:4"}) {
        INFO(bad);
        CHECK(metrics_listen_problem(bad));
    }
    auto parsed = parse_config("[metrics]\nlisten = \"localhost:9464\"\n", "m.toml");
    REQUIRE(std::holds_alternative<ConfigError>(parsed));
    CHECK_THAT(std::get<ConfigError>(parsed).message, Contains("m.toml:2:"));
    CHECK_THAT(std::get<ConfigError>(parsed).message, Contains("no names"));
    auto good = parse_config("[metrics]\nlisten = \"127.0.0.1:9464\"\n", "m.toml");
    REQUIRE(std::holds_alternative<Config>(good));
    CHECK(std::get<Config>(good).metrics.listen == "127.0.0.1:9464");
    CHECK_THAT(to_toml(std::get<Config>(good)), Contains("[metrics]\nlisten = \"127.0.0.1:9464\""));
}
