#!/usr/bin/env bash
# Configures and builds the native tools of fuzz/native/ with plain CMake (no Python module):
#   build-native/plain  leak_check, -O1 -g, no sanitizer (for valgrind)
#   build-native/asan   leak_check with ASan + UBSan (LeakSanitizer)
#   build-native/fuzz   fuzz_decoder, clang -fsanitize=fuzzer,address,undefined
#
#   fuzz/native/build.sh [plain] [asan] [fuzz]     (default: all three)
#
# C-Blosc2 comes from the blosc2 wheel of $PYTHON (default python3): its CMake package lies in
# site-packages/blosc2/lib/cmake/blosc2 (what scikit-build-core finds through site-packages).
# JOBS (default 2) sets the build parallelism.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
BLOSC2_DIR="$("$PYTHON" -c 'import os, blosc2; print(os.path.join(os.path.dirname(blosc2.__file__), "lib", "cmake", "blosc2"))')"
if [[ ! -f "$BLOSC2_DIR/Blosc2Config.cmake" ]]; then
    echo "error: no Blosc2Config.cmake in $BLOSC2_DIR (pip install blosc2>=4.10.1)" >&2
    exit 1
fi
GENERATOR=()
command -v ninja >/dev/null 2>&1 && GENERATOR=(-G Ninja)

configure_build() {
    local dir="$1"
    shift
    cmake -S . -B "build-native/$dir" "${GENERATOR[@]}" -DZARRCROP_PYTHON_MODULE=OFF \
        -DZARRCROP_WERROR=ON -DBlosc2_DIR="$BLOSC2_DIR" "$@"
    cmake --build "build-native/$dir" -j "$JOBS"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(plain asan fuzz)
for t in "${targets[@]}"; do
    case "$t" in
        plain) configure_build plain -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZARRCROP_NATIVE_TOOLS=ON ;;
        asan) configure_build asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZARRCROP_NATIVE_TOOLS=ON \
                  -DZARRCROP_SANITIZE=ON ;;
        fuzz)
            CLANGXX="${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}"
            if [[ -z "$CLANGXX" ]]; then
                echo "error: the libFuzzer targets need clang++ (apt-get install clang libclang-rt-14-dev)" >&2
                exit 1
            fi
            configure_build fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CLANGXX" \
                -DZARRCROP_FUZZERS=ON ;;
        *) echo "unknown build: $t (plain, asan, fuzz)" >&2; exit 2 ;;
    esac
done
