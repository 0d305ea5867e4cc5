// The hand-written parts of the gRPC health prober: targets, the two messages, headers.
#include "vigil/grpc_wire.hpp"

#include <catch2/catch.hpp>

using namespace vigil;
using namespace std::string_literals;

TEST_CASE("parse_grpc_target reads every form the config accepts", "[grpc_wire]") {
    SECTION("unix") {
        for (const char* t : {"unix:///run/c.sock", "unix:/run/c.sock"}) {
            auto r = parse_grpc_target(t);
            REQUIRE(r.ok());
            CHECK(r->kind == GrpcTarget::Kind::unix_path);
            CHECK(r->path == "/run/c.sock");
            CHECK(r->authority == "localhost");
        }
        auto a = parse_grpc_target("unix-abstract:vigil-h");
        REQUIRE(a.ok());
        CHECK(a->kind == GrpcTarget::Kind::unix_abstract);
        CHECK(a->path == "vigil-h");
        CHECK_FALSE(parse_grpc_target("unix:run/c.sock").ok());
    }
    SECTION("names, with gRPC's default port 443") {
        auto d = parse_grpc_target("dns:///example.com");
        REQUIRE(d.ok());
        CHECK(d->kind == GrpcTarget::Kind::name);
        CHECK(d->host == "example.com");
        CHECK(d->port == 443);
        CHECK(d->authority == "example.com:443");
        auto a = parse_grpc_target("dns://8.8.8.8:53/svc.local:50051");
        REQUIRE(a.ok());
        CHECK(a->host == "svc.local");
        CHECK(a->port == 50051);
        auto h = parse_grpc_target("localhost:7777");
        REQUIRE(h.ok());
        CHECK(h->host == "localhost");
        CHECK(h->port == 7777);
        auto v6 = parse_grpc_target("[::1]:9");
        REQUIRE(v6.ok());
        CHECK(v6->host == "::1");
        CHECK(v6->authority == "[::1]:9");
        CHECK_FALSE(parse_grpc_target("host:0").ok());
        CHECK_FALSE(parse_grpc_target("host:http").ok());
    }
    SECTION("address lists need no lookup") {
        auto v4 = parse_grpc_target("ipv4:127.0.0.1:50051,10.0.0.1");
        REQUIRE(v4.ok());
        CHECK(v4->kind == GrpcTarget::Kind::addresses);
        REQUIRE(v4->endpoints.size() == 2);
        CHECK(v4->endpoints[0].port() == 50051);
        CHECK(v4->endpoints[1].port() == 443);
        CHECK(v4->authority == "127.0.0.1:50051");
        auto v6 = parse_grpc_target("ipv6:[::1]:50051");
        REQUIRE(v6.ok());
        REQUIRE(v6->endpoints.size() == 1);
        CHECK(v6->endpoints[0].address().is_v6());
        CHECK_FALSE(parse_grpc_target("ipv4:::1").ok());
        CHECK_FALSE(parse_grpc_target("ipv4:").ok());
    }
}

TEST_CASE("the health messages are framed as gRPC frames them", "[grpc_wire]") {
    CHECK(encode_health_request("") == std::string(5, '\0'));
    CHECK(encode_health_request("containerd") == "\0\0\0\0\x0c\x0a\x0a"s + "containerd");
    const std::string long_name(200, 'x'); // a two-byte varint length
    CHECK(encode_health_request(long_name) == "\0\0\0\0\xcb\x0a\xc8\x01"s + long_name);

    auto status = [](const std::string& b) { return decode_health_response(b); };
    CHECK(*status("\0\0\0\0\x02\x08\x01"s) == 1); // SERVING
    CHECK(*status("\0\0\0\0\x02\x08\x03"s) == 3); // SERVICE_UNKNOWN
    CHECK(*status("\0\0\0\0\0"s) == 0);           // proto3 default: UNKNOWN
    // A field vigild does not know (a newer server's) is skipped.
    CHECK(*status("\0\0\0\0\x06\x12\x02hi\x08\x02"s) == 2);
    CHECK_FALSE(status("\x01\0\0\0\x02\x08\x01"s).ok()); // compressed
    CHECK_FALSE(status("\0\0\0\0\x05\x08\x01"s).ok());   // prefix says more than came
    CHECK_FALSE(status("\0\0\0"s).ok());
    CHECK_FALSE(status("\0\0\0\0\x01\x08"s).ok()); // a key without its value
    CHECK(status("\0\0\0\0\x02\x08\x01"s + "x").ok() == false);
}

TEST_CASE("grpc-timeout and grpc-message", "[grpc_wire]") {
    CHECK(grpc_timeout_value(std::chrono::seconds(3)) == "3000m");
    CHECK(grpc_timeout_value(std::chrono::milliseconds(0)) == "1m");
    CHECK(grpc_timeout_value(std::chrono::hours(100'000)) == "99999999S");
    CHECK(percent_decode("no%20such%3a%zz%") == "no such:%zz%");
}
