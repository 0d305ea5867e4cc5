// parse_duration() on arbitrary text (config values, vigilctl's flags). Oracle: an accepted
// duration prints with format_duration() as a string that parses back to the same value.
#include "vigil/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto d = vigil::parse_duration(text);
    if (!d)
        return 0;
    const std::string printed = vigil::format_duration(*d);
    if (vigil::parse_duration(printed) != d) {
        std::fprintf(stderr, "%lld ms printed as \"%s\" does not parse back\n",
                     static_cast<long long>(d->count()), printed.c_str());
        std::abort();
    }
    return 0;
}
