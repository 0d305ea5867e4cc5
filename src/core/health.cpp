#include "vigil/health.hpp"

#include "vigil/tsan_handoff.hpp"

#include "grpc/health/v1/health.grpc.pb.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>

namespace vigil {
namespace {

// While the child starts, probes come a few ms apart; the channel must not wait out gRPC's
// default reconnect back-off (1s, growing to 120s) after a refused connection, because a
// call made while the channel backs off fails at once, and readiness would be noticed up
// to seconds late. A channel belongs to one child incarnation and stays connected while
// the child lives, so a short back-off costs nothing once it is up.
constexpr int kReconnectBackoffInitialMs = 5;
constexpr int kReconnectBackoffMaxMs = 20;

// gRPC's UNAVAILABLE message for a socket nobody listens on (or that does not exist).
bool refused(const std::string& message) {
    for (const char* s : {"Connection refused", "No such file or directory", "connection refused",
                          "Failed to connect", "failed to connect"})
        if (message.find(s) != std::string::npos)
            return true;
    return false;
}

} // namespace

std::string_view to_string(HealthResult r) {
    switch (r) {
    case HealthResult::serving:
        return "SERVING";
    case HealthResult::not_serving:
        return "NOT_SERVING";
    case HealthResult::unknown:
        return "UNKNOWN";
    case HealthResult::service_unknown:
        return "SERVICE_UNKNOWN";
    case HealthResult::deadline_exceeded:
        return "deadline exceeded";
    case HealthResult::connection_refused:
        return "connection refused";
    case HealthResult::unavailable:
        return "unavailable";
    case HealthResult::error:
        return "error";
    }
    return "?";
}

std::string HealthOutcome::describe() const {
    if (detail.empty())
        return std::string(to_string(result));
    return fmt::format("{}: {}", to_string(result), detail);
}

struct GrpcHealthProber::Call {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
};

GrpcHealthProber::GrpcHealthProber(asio::io_context& io, const HealthConfig& config)
    : io_(io), config_(config) {}

GrpcHealthProber::~GrpcHealthProber() {
    std::unique_lock lock(mu_);
    for (auto& w : in_flight_)
        if (auto call = w.lock())
            call->context.TryCancel();
    idle_.wait(lock, [this] { return pending_ == 0; });
}

void GrpcHealthProber::configure(const HealthConfig& config) {
    config_ = config;
}

void GrpcHealthProber::reset() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kReconnectBackoffInitialMs);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kReconnectBackoffMaxMs);
    // A fresh channel per child incarnation: never reuse a connection to a dead process.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // [health] address is a gRPC target as it is: "unix:///path" or "host:port".
    channel_ = grpc::CreateCustomChannel(config_.address, grpc::InsecureChannelCredentials(), args);
}

void GrpcHealthProber::probe(Callback cb) {
    if (!channel_)
        reset();
    auto call = std::make_shared<Call>();
    call->request.set_service(config_.service);
    call->context.set_deadline(std::chrono::system_clock::now() + config_.timeout);
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    {
        std::lock_guard lock(mu_);
        ++pending_;
        std::erase_if(in_flight_, [](const std::weak_ptr<Call>& w) { return w.expired(); });
        in_flight_.push_back(call);
    }
    // gRPC copies the callback here and runs the copy on its thread: a TsanHandoff.
    struct Probe {
        GrpcHealthProber* self;
        std::shared_ptr<Call> call;
        Callback cb;
        Duration timeout;
        std::string service;
    };
    TsanHandoff<Probe> handoff(Probe{this, call, std::move(cb), config_.timeout, config_.service});
    stub->async()->Check(
        &call->context, &call->request, &call->response,
        [h = std::move(handoff)](grpc::Status status) mutable {
            auto& [self, call, cb, timeout, service] = h.take();
            // gRPC thread: build the outcome here, touch nothing of the supervisor.
            HealthOutcome out;
            if (status.ok()) {
                using R = grpc::health::v1::HealthCheckResponse;
                switch (call->response.status()) {
                case R::SERVING:
                    out.result = HealthResult::serving;
                    break;
                case R::NOT_SERVING:
                    out.result = HealthResult::not_serving;
                    break;
                case R::SERVICE_UNKNOWN:
                    out.result = HealthResult::service_unknown;
                    break;
                default:
                    out.result = HealthResult::unknown;
                    break;
                }
            } else {
                switch (status.error_code()) {
                case grpc::StatusCode::DEADLINE_EXCEEDED:
                    out.result = HealthResult::deadline_exceeded;
                    out.detail = fmt::format("no answer within {}", format_duration(timeout));
                    break;
                case grpc::StatusCode::UNAVAILABLE:
                    // Only a refused or missing socket is "connection refused"; anything
                    // else (a DNS failure, a TLS mismatch) is logged as what it is.
                    out.result = refused(status.error_message()) ? HealthResult::connection_refused
                                                                 : HealthResult::unavailable;
                    out.detail = status.error_message();
                    break;
                case grpc::StatusCode::NOT_FOUND:
                    out.result = HealthResult::service_unknown;
                    out.detail = fmt::format("the child does not know service '{}'", service);
                    break;
                default:
                    out.result = HealthResult::error;
                    out.detail =
                        fmt::format("gRPC status {}: {}", static_cast<int>(status.error_code()),
                                    status.error_message());
                    break;
                }
            }
            asio::post(self->io_, [cb = std::move(cb), out = std::move(out)] { cb(out); });
            std::lock_guard lock(self->mu_);
            if (--self->pending_ == 0)
                self->idle_.notify_all();
        });
}

} // namespace vigil
