// Control API requests (proto/vigil/v1/supervisor.proto) as a client could send them: the
// first byte picks the message, the rest is parsed as its protobuf encoding, then handed to
// the helpers that take request fields. The per-request validators (stop_timeout_from,
// signal_from, oom_score_from) live in an anonymous namespace of control_server.cpp, not
// reachable without the gRPC server; what they call is fuzzed here: parse_signal() for a
// signal name, valid_utf8() for every string echoed back in a status message, and the
// RFC 3339 times vigilctl reads from replies.
// Oracles: valid_utf8() returns valid UTF-8 that keeps valid input unchanged; an accepted
// RFC 3339 time prints and parses back to itself (to the millisecond).
#include "vigil/config.hpp"
#include "vigil/control_proto.hpp"

#include "vigil/v1/supervisor.pb.h"

#include <google/protobuf/stubs/logging.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "%s\n", what);
    std::abort();
}

bool is_utf8(std::string_view s) {
    std::size_t i = 0;
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    while (i < s.size()) {
        const unsigned char c = byte(i);
        std::size_t n = c < 0x80                 ? 1
                        : c >= 0xC2 && c <= 0xDF ? 2
                        : c >= 0xE0 && c <= 0xEF ? 3
                        : c >= 0xF0 && c <= 0xF4 ? 4
                                                 : 0;
        if (n == 0 || i + n > s.size())
            return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((byte(i + k) & 0xC0) != 0x80)
                return false;
        // Overlong forms, surrogates, beyond U+10FFFF.
        if ((c == 0xE0 && byte(i + 1) < 0xA0) || (c == 0xED && byte(i + 1) >= 0xA0) ||
            (c == 0xF0 && byte(i + 1) < 0x90) || (c == 0xF4 && byte(i + 1) >= 0x90))
            return false;
        i += n;
    }
    return true;
}

void check_text(std::string_view s) {
    const std::string clean = vigil::valid_utf8(s);
    if (!is_utf8(clean))
        fail("valid_utf8() returned invalid UTF-8");
    if (is_utf8(s) && clean != s)
        fail("valid_utf8() changed valid UTF-8");
}

void check_time(std::string_view s) {
    const auto t = vigil::parse_rfc3339(s);
    if (!t)
        return;
    const auto ms = std::chrono::time_point_cast<std::chrono::milliseconds>(*t);
    const std::string printed = vigil::format_rfc3339(vigil::SystemTime(ms));
    const auto back = vigil::parse_rfc3339(printed);
    if (!back || *back != ms)
        fail("an RFC 3339 time does not round-trip");
}

template <typename Message> bool parse(Message& m, const uint8_t* data, size_t size) {
    return m.ParseFromArray(data, static_cast<int>(size));
}

} // namespace

// protobuf logs every string field that is not UTF-8; the fuzzer makes many.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0)
        return 0;
    const uint8_t which = data[0];
    ++data;
    --size;
    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    switch (which % 7) {
    case 0: {
        vigil::v1::StopRequest req;
        if (parse(req, data, size) && req.has_timeout())
            (void)req.timeout().ShortDebugString();
        break;
    }
    case 1: {
        vigil::v1::SignalRequest req;
        if (parse(req, data, size) && req.has_name()) {
            if (auto sig = vigil::parse_signal(req.name()); sig && (*sig < 1 || *sig > 64))
                fail("parse_signal() accepted a signal outside 1..64");
            check_text(req.name());
        }
        break;
    }
    case 2: {
        vigil::v1::SetOomScoreAdjRequest req;
        (void)parse(req, data, size);
        break;
    }
    case 3: {
        vigil::v1::ShutdownRequest req;
        (void)parse(req, data, size);
        break;
    }
    case 4: {
        vigil::v1::LogsRequest req;
        (void)parse(req, data, size);
        break;
    }
    case 5:
        check_text(raw);
        break;
    case 6:
        check_time(raw);
        break;
    }
    return 0;
}
