// grpc_target_problem() (the [health] address and --health-address) on arbitrary text.
// Oracle: what it accepts is never a bare path, and a message names what is wrong.
#include "vigil/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto problem = vigil::grpc_target_problem(text);
    if (!problem && (text.empty() || text.front() == '/' || text.size() > vigil::kMaxPathLength)) {
        std::fprintf(stderr, "accepted a target that is empty, a bare path or too long\n");
        std::abort();
    }
    if (problem && problem->empty()) {
        std::fprintf(stderr, "refused a target without saying why\n");
        std::abort();
    }
    return 0;
}
