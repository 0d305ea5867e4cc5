# VIGIL_FUZZ=ON: the libFuzzer targets and only what they need (no daemons, no tests).
# Included from the top-level CMakeLists.txt, so that the generated protobuf sources of
# vigil_protoc() are visible here. Configure a separate tree with clang:
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DVIGIL_FUZZ=ON
# docs/fuzzing.md says how to run the targets.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "VIGIL_FUZZ=ON needs clang (libFuzzer comes with it); configure a "
                      "separate build dir with CC=clang CXX=clang++")
endif()

# Everything the fuzzers run is instrumented for coverage and checked by ASan and UBSan;
# -fsanitize=fuzzer (libFuzzer's main) is added to the fuzz targets alone.
set(VIGIL_FUZZ_SANITIZERS address,undefined)
add_compile_options(-fsanitize=fuzzer-no-link,${VIGIL_FUZZ_SANITIZERS}
                    -fno-sanitize-recover=all -fno-omit-frame-pointer -g -ffunction-sections)
# --gc-sections: control_proto.cpp's to_proto() conversions need the supervisor's event
# names; the fuzzers never call them, so they (and what they need) are dropped instead of
# linking the whole daemon in (see fuzz-coverage-ignorelist.txt).
add_link_options(-fsanitize=${VIGIL_FUZZ_SANITIZERS} -Wl,--gc-sections)

# The messages of the control API only (not the gRPC service code).
add_library(vigil_fuzz_proto STATIC ${PROTO_OUT}/vigil/v1/supervisor.pb.cc)
target_include_directories(vigil_fuzz_proto SYSTEM PUBLIC ${PROTO_OUT})
target_link_libraries(vigil_fuzz_proto PUBLIC PkgConfig::PROTOBUF)
target_compile_options(vigil_fuzz_proto PRIVATE -w)

# toml++ compiled from its headers into one object (TOML_IMPLEMENTATION), so that the
# parser is instrumented too: coverage guides the fuzzer through it.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/toml_impl.cpp
     "#define TOML_IMPLEMENTATION\n#include <toml++/toml.h>\n")

# The sources the fuzzers reach, and no more.
add_library(vigil_fuzz_core STATIC
  ${CMAKE_CURRENT_BINARY_DIR}/toml_impl.cpp
  ${PROJECT_SOURCE_DIR}/src/core/cli.cpp
  ${PROJECT_SOURCE_DIR}/src/core/cli_parse.cpp
  ${PROJECT_SOURCE_DIR}/src/core/config.cpp
  ${PROJECT_SOURCE_DIR}/src/core/control_proto.cpp
  ${PROJECT_SOURCE_DIR}/src/core/env_file.cpp
  ${PROJECT_SOURCE_DIR}/src/core/exec_env.cpp
  ${PROJECT_SOURCE_DIR}/src/core/fs_util.cpp
  ${PROJECT_SOURCE_DIR}/src/core/limits.cpp
  ${PROJECT_SOURCE_DIR}/src/core/log.cpp
  ${PROJECT_SOURCE_DIR}/src/core/operator_hold.cpp
  ${PROJECT_SOURCE_DIR}/src/core/process.cpp
  ${PROJECT_SOURCE_DIR}/src/core/record_text.cpp
  ${PROJECT_SOURCE_DIR}/src/core/state_record.cpp)
set_source_files_properties(${PROJECT_SOURCE_DIR}/src/core/control_proto.cpp PROPERTIES
  COMPILE_OPTIONS -fsanitize-coverage-ignorelist=${CMAKE_CURRENT_LIST_DIR}/fuzz-coverage-ignorelist.txt)
target_include_directories(vigil_fuzz_core PUBLIC ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(vigil_fuzz_core PUBLIC VIGIL_VERSION="${PROJECT_VERSION}"
                                                  TOML_HEADER_ONLY=0)
target_link_libraries(vigil_fuzz_core PUBLIC vigil_fuzz_proto fmt::fmt Boost::boost
                                             CLI11::CLI11 Threads::Threads)

add_subdirectory(tests/fuzz)
