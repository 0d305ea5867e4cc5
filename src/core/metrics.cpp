#include "vigil/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>

#include <sstream>

namespace vigil {
namespace {

constexpr const char* kStates[] = {"stopped", "starting", "running", "unhealthy",
                                   "backoff", "stopping", "failed"};
// Health check latency buckets, in seconds: from a local check (~1 ms) to the longest
// timeout worth telling apart.
const prometheus::Histogram::BucketBoundaries kCheckBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
// The listener's threads: two are plenty for a scrape every few seconds.
constexpr std::size_t kListenerThreads = 2;

double seconds_of(Duration d) {
    return std::chrono::duration<double>(d).count();
}

} // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
    using namespace prometheus;
    up_ = &BuildGauge()
               .Name("vigil_child_up")
               .Help("1 while the child is running (healthy), else 0")
               .Register(*registry_)
               .Add({});
    auto& state = BuildGauge()
                      .Name("vigil_child_state")
                      .Help("1 for the child's current state, 0 for the others")
                      .Register(*registry_);
    for (const char* s : kStates)
        states_[s] = &state.Add({{"state", s}});
    restarts_ = &BuildCounter()
                     .Name("vigil_child_restarts_total")
                     .Help("restarts of the child since vigild started (reloads included)")
                     .Register(*registry_)
                     .Add({});
    start_time_ = &BuildGauge()
                       .Name("vigil_child_start_time_seconds")
                       .Help("when the child started, in seconds since the epoch; 0 without "
                             "a child")
                       .Register(*registry_)
                       .Add({});
    oom_score_ = &BuildGauge()
                      .Name("vigil_child_oom_score_adj")
                      .Help("the child's oom_score_adj, read back from /proc")
                      .Register(*registry_)
                      .Add({});
    checks_ = &BuildCounter()
                   .Name("vigil_health_checks_total")
                   .Help("health checks of the child, by result")
                   .Register(*registry_);
    check_duration_ = &BuildHistogram()
                           .Name("vigil_health_check_duration_seconds")
                           .Help("how long health checks took, answered or not")
                           .Register(*registry_)
                           .Add({}, kCheckBuckets);
    oom_kills_ = &BuildCounter()
                      .Name("vigil_child_oom_kills_total")
                      .Help("children killed by the kernel's OOM killer")
                      .Register(*registry_)
                      .Add({});
    BuildGauge()
        .Name("vigil_build_info")
        .Help("vigild's version")
        .Register(*registry_)
        .Add({{"version", VIGIL_VERSION}})
        .Set(1);
    states_["stopped"]->Set(1);
}

Metrics::~Metrics() = default;

void Metrics::update(const StatusSnapshot& s) {
    up_->Set(s.state == "running" ? 1 : 0);
    for (auto& [name, gauge] : states_)
        gauge->Set(name == s.state ? 1 : 0);
    if (s.restart_count > restarts_seen_)
        restarts_->Increment(s.restart_count - restarts_seen_);
    restarts_seen_ = s.restart_count;
    start_time_->Set(s.pid != 0 && s.started_at
                         ? std::chrono::duration<double>(s.started_at->time_since_epoch()).count()
                         : 0);
    if (s.oom_actual)
        oom_score_->Set(*s.oom_actual);
}

void Metrics::on_exit(const ExitStatus& e) {
    if (e.oom_kill)
        oom_kills_->Increment();
}

void Metrics::observe_health(const HealthOutcome& outcome, Duration latency) {
    // A label value in the metrics' own style: "deadline exceeded" -> deadline_exceeded.
    std::string result(to_string(outcome.result));
    for (auto& c : result)
        c = c == ' ' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = checks_by_result_.find(result);
    if (it == checks_by_result_.end())
        it = checks_by_result_.emplace(result, &checks_->Add({{"result", result}})).first;
    it->second->Increment();
    check_duration_->Observe(seconds_of(latency));
}

std::string Metrics::text() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    return out.str();
}

MetricsListener::MetricsListener() = default;
MetricsListener::~MetricsListener() = default;

Status MetricsListener::listen(const std::string& listen, const Metrics& metrics) {
    if (listen == address_)
        return ok_status();
    if (listen.empty()) {
        exposer_.reset();
        address_.clear();
        return ok_status();
    }
    std::unique_ptr<prometheus::Exposer> next;
    try {
        // civetweb takes IPv6 as "[::1]:9464" too.
        next = std::make_unique<prometheus::Exposer>(listen, kListenerThreads);
    } catch (const std::exception& e) {
        return make_error(fmt::format("cannot listen for metrics on {}: {} (is the port in "
                                      "use?)",
                                      listen, e.what()));
    }
    next->RegisterCollectable(metrics.registry());
    exposer_ = std::move(next);
    address_ = listen;
    return ok_status();
}

} // namespace vigil
