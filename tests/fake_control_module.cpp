// Control modules vigild must refuse (control_module.hpp), built as two fixtures:
// - FAKE_BUILD_MISMATCH: the entry points, but another build string (in the section vigild
//   reads before the spawn, and from vigil_control_build()): refused before any spawn.
// - otherwise: vigild's own build string, but no vigil_control_create: it passes the checks
//   before the spawn and fails to load after it.
#include "vigil/control_module.hpp"

#include <cstdlib>

#ifdef FAKE_BUILD_MISMATCH
#define FAKE_BUILD "vigil 0.0.0 abi 0 (tests/fake_control_module.cpp)"
#else
#define FAKE_BUILD VIGIL_CONTROL_MODULE_BUILD
#endif

__attribute__((used, section(VIGIL_CONTROL_BUILD_SECTION))) const char fake_build[] = FAKE_BUILD;

extern "C" {

__attribute__((visibility("default"))) const char* vigil_control_build() {
    return FAKE_BUILD;
}

#ifdef FAKE_BUILD_MISMATCH
__attribute__((visibility("default"))) void* vigil_control_create(void*, void*, const void*) {
    std::abort(); // never called: the build check comes first
}
#endif

} // extern "C"
