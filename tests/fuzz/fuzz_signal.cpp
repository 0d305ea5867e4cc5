// parse_signal() (config values, vigilctl's and the control API's signal names) and
// parse_oom_score() on arbitrary text. Oracles: an accepted signal is 1..64 and its
// signal_name() parses back to it; an accepted OOM score is in range and prints back.
#include "vigil/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (const auto sig = vigil::parse_signal(text)) {
        const std::string name = vigil::signal_name(*sig);
        if (*sig < 1 || *sig > 64 || vigil::parse_signal(name) != sig) {
            std::fprintf(stderr, "signal %d (named %s) does not round-trip\n", *sig, name.c_str());
            std::abort();
        }
    }
    if (const auto score = vigil::parse_oom_score(text)) {
        if ((!score->inherit && (score->value < -1000 || score->value > 1000)) ||
            vigil::parse_oom_score(vigil::to_string(*score)) != score) {
            std::fprintf(stderr, "OOM score %d does not round-trip\n", score->value);
            std::abort();
        }
    }
    return 0;
}
