// Health probes other than gRPC's (DESIGN.md "Health kinds"): http (GET, 200-399 is
// healthy), tcp (a connection is accepted), exec (a command exits 0 within the timeout).
// Each probe is an operation of its own with its own deadline, so probes overlap as the
// ProbeScheduler asks; the callback runs once, on the loop, whatever happens.
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/health.hpp"

#include <memory>

namespace vigil {

class Reaper;

// The prober for `config.kind` (grpc, http, tcp, exec); nullptr for none. `reaper` reaps
// the commands of kind exec.
std::unique_ptr<HealthProber> make_prober(asio::io_context& io, Reaper& reaper,
                                          const HealthConfig& config);

class TcpHealthProber final : public HealthProber {
public:
    TcpHealthProber(asio::io_context& io, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;

private:
    asio::io_context& io_;
    HealthConfig config_;
};

class HttpHealthProber final : public HealthProber {
public:
    HttpHealthProber(asio::io_context& io, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;

private:
    asio::io_context& io_;
    HealthConfig config_;
};

class ExecHealthProber final : public HealthProber {
public:
    ExecHealthProber(asio::io_context& io, Reaper& reaper, const HealthConfig& config);
    void reset() override {}
    void probe(Callback cb) override;

private:
    asio::io_context& io_;
    Reaper& reaper_;
    HealthConfig config_;
};

} // namespace vigil
