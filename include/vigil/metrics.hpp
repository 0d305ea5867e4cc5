// Prometheus metrics (DESIGN.md "Metrics"): kept in a prometheus-cpp registry that the
// loop updates and that the HTTP listener's threads only read (prometheus-cpp's metrics
// are thread-safe), so no listener thread touches supervisor state.
#pragma once

#include "vigil/config.hpp"
#include "vigil/control_backend.hpp"
#include "vigil/health.hpp"
#include "vigil/result.hpp"

#include <map>
#include <memory>
#include <string>

namespace prometheus {
class Registry;
class Exposer;
class Counter;
class Gauge;
class Histogram;
template <typename T> class Family;
} // namespace prometheus

namespace vigil {

class Metrics {
public:
    Metrics();
    ~Metrics();

    // Loop thread. The child as the status shows it now: up, state, start time, OOM score,
    // restarts (counted as the status' counter grows, so a reload never sets it back).
    void update(const StatusSnapshot& s);
    // An exit: counts OOM kills.
    void on_exit(const ExitStatus& e);
    // One health check: its outcome and how long it took.
    void observe_health(const HealthOutcome& outcome, Duration latency);

    // The Prometheus text format (any thread).
    std::string text() const;
    std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

private:
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Gauge* up_;
    std::map<std::string, prometheus::Gauge*> states_;
    prometheus::Counter* restarts_;
    prometheus::Gauge* start_time_;
    prometheus::Gauge* oom_score_;
    prometheus::Family<prometheus::Counter>* checks_;
    std::map<std::string, prometheus::Counter*, std::less<>> checks_by_result_;
    prometheus::Histogram* check_duration_;
    prometheus::Counter* oom_kills_;
    unsigned restarts_seen_ = 0;
};

// The HTTP listener at [metrics] listen: prometheus-cpp's Exposer (civetweb threads).
class MetricsListener {
public:
    MetricsListener();
    ~MetricsListener();
    // Listens on `listen` ("" = stop listening), serving `metrics`. On failure (the port is
    // in use) the listener keeps what it had and says why.
    Status listen(const std::string& listen, const Metrics& metrics);
    const std::string& address() const { return address_; }

private:
    std::string address_;
    std::unique_ptr<prometheus::Exposer> exposer_;
};

} // namespace vigil
