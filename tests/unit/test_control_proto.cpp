// Regression tests for what the fuzzers found in control_proto.cpp's helpers.
#include "vigil/control_proto.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace vigil;

TEST_CASE("parse_rfc3339 refuses times SystemTime cannot hold", "[control][fuzz]") {
    // fuzz_control_request: year 20 overflowed the nanosecond conversion (UBSan: signed
    // integer overflow) and came back as a wrapped time. SystemTime counts nanoseconds in
    // 64 bits, so it spans 1677-09-21..2262-04-11.
    for (const char* s :
         {"0020-05-01T12:00:00.13+06:00", "0001-01-01T00:00:00Z", "1677-09-21T00:12:43Z",
          "2262-04-11T23:47:17Z", "9999-12-31T23:59:59.999999999Z"}) {
        CAPTURE(s);
        CHECK_FALSE(parse_rfc3339(s).has_value());
    }
    // Inside the range, to the nanosecond, both ends.
    const auto early = parse_rfc3339("1677-09-21T00:12:44Z");
    REQUIRE(early);
    CHECK(early->time_since_epoch() == std::chrono::seconds(-9223372036));
    const auto late = parse_rfc3339("2262-04-11T23:47:15.999999999Z");
    REQUIRE(late);
    CHECK(late->time_since_epoch() ==
          std::chrono::seconds(9223372035) + std::chrono::nanoseconds(999999999));
    CHECK(parse_rfc3339(format_rfc3339(*late)).has_value());
}
