// parse_state_record() (src/core/state_record.cpp) on arbitrary bytes: what vigild reads
// back from child.state before it believes a pid. Oracle: an accepted record formats
// (format_state_record()) into a record that parses to the same identity.
#include "vigil/state_record.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto id = vigil::parse_state_record(text);
    if (!id)
        return 0;
    if (id->pid <= 0 || id->boot_id.empty() || id->exe.empty()) {
        std::fprintf(stderr, "accepted a record without pid, boot_id or exe\n");
        std::abort();
    }
    const std::string again = vigil::format_state_record(*id);
    auto back = vigil::parse_state_record(again);
    if (!back || back->pid != id->pid || back->start_time != id->start_time ||
        back->boot_id != id->boot_id || back->exe != id->exe) {
        std::fprintf(stderr, "record does not round-trip:\n%s\n", again.c_str());
        std::abort();
    }
    return 0;
}
