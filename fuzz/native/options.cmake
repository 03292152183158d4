# Options of the checking builds, included by the top-level CMakeLists.txt before any target is
# defined: the flags below are directory-wide, so they reach every target (zarrcrop_core, the
# Python extension _core, the native tools). The native tool targets: fuzz/native/CMakeLists.txt.
#   ZARRCROP_SANITIZE     ASan + UBSan. With the Python extension: .ci/run's sanitizer stage
#                         (pip install ".[test]" -Ccmake.define.ZARRCROP_SANITIZE=ON)
#   ZARRCROP_NATIVE_TOOLS the leak check program (fuzz/native/build.sh plain, asan)
#   ZARRCROP_FUZZERS      the libFuzzer targets; needs clang (fuzz/native/build.sh fuzz)
option(ZARRCROP_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(ZARRCROP_NATIVE_TOOLS "Build the native leak check (fuzz/native/leak_check.cpp)" OFF)
option(ZARRCROP_FUZZERS "Build the libFuzzer targets (clang; fuzzer, ASan, UBSan)" OFF)

if(ZARRCROP_FUZZERS AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "ZARRCROP_FUZZERS=ON needs clang (CMAKE_CXX_COMPILER=clang++)")
endif()
if(ZARRCROP_SANITIZE OR ZARRCROP_FUZZERS)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(ZARRCROP_FUZZERS)
  # Undefined behaviour ends the fuzz run like a crash does.
  add_compile_options(-fno-sanitize-recover=undefined)
endif()
