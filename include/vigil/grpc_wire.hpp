// What the gRPC health prober needs of gRPC itself, written by hand: where a gRPC target
// points, and the two one-field health messages with gRPC's 5-byte length prefix.
//
// vigild does not link libprotobuf or libgrpc for its health checks (process start, idle
// threads: docs/performance.md): HealthCheckRequest{string service = 1} and
// HealthCheckResponse{enum status = 1} are a tag and a varint or a string each, so a few
// lines here replace the generated code. The HTTP/2 framing is libnghttp2's (health.cpp).
#pragma once

#include "vigil/asio.hpp"
#include "vigil/config.hpp"
#include "vigil/result.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vigil {

// A [health] address of kind grpc, in any form config.cpp's grpc_target_problem accepts.
struct GrpcTarget {
    enum class Kind {
        unix_path,     // unix:///PATH, unix:PATH
        unix_abstract, // unix-abstract:NAME
        addresses,     // ipv4:ADDR[:PORT][,...], ipv6:[ADDR]:PORT[,...]: no name to look up
        name,          // dns:[//AUTHORITY/]HOST[:PORT], HOST:PORT: resolved with async_resolve
    };
    Kind kind = Kind::unix_path;
    std::string path; // unix_path: the path; unix_abstract: the name (without its NUL)
    std::vector<asio::ip::tcp::endpoint> endpoints; // addresses
    std::string host;                               // name
    std::uint16_t port = 443;                       // gRPC's default for a target without a port
    std::string authority; // the :authority header: "localhost" for unix, else HOST:PORT
};

Result<GrpcTarget> parse_grpc_target(std::string_view target);

// The request as gRPC frames it: a 0 byte (not compressed), the length (4 bytes, big
// endian), then field 1 (the service name; omitted when empty, as protobuf does).
std::string encode_health_request(std::string_view service);

// The status (0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN, or a newer value)
// from a length-prefixed response; an error for anything malformed or compressed.
Result<std::uint64_t> decode_health_response(std::string_view body);

// The grpc-timeout header's value: at most 8 digits and a unit ("3000m", "100S").
std::string grpc_timeout_value(Duration timeout);

// grpc-message is percent-encoded (gRPC's PROTOCOL-HTTP2.md); invalid escapes are kept.
std::string percent_decode(std::string_view s);

} // namespace vigil
