// The record parsers (src/core/state_record.cpp, src/core/operator_hold.cpp) on
// arbitrary bytes: what vigild reads back from child.state, child.next and child.hold
// before it believes anything. Oracle: an accepted record formats into a record that
// parses to the same value.
#include "vigil/operator_hold.hpp"
#include "vigil/state_record.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

[[noreturn]] void fail(const char* what, const std::string& text) {
    std::fprintf(stderr, "%s:\n%s\n", what, text.c_str());
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    if (auto r = vigil::parse_state_record(text)) {
        if (r->identity.pid <= 0 || r->identity.boot_id.empty() || r->identity.exe.empty() ||
            r->instance.empty())
            fail("accepted a child record without pid, boot_id, exe or instance", text);
        const std::string again = vigil::format_state_record(*r);
        auto back = vigil::parse_state_record(again);
        if (!back || !(*back == *r))
            fail("child record does not round-trip", again);
    }
    if (auto n = vigil::parse_next_spawn(text)) {
        const std::string again = vigil::format_next_spawn(*n);
        auto back = vigil::parse_next_spawn(again);
        if (!back || !(*back == *n))
            fail("next-spawn record does not round-trip", again);
    }
    if (auto h = vigil::parse_hold(text)) {
        const std::string again = vigil::format_hold(*h);
        auto back = vigil::parse_hold(again);
        if (!back || !(*back == *h))
            fail("hold does not round-trip", again);
    }
    return 0;
}
