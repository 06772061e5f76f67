#!/usr/bin/env bash
# The unit tests (C++ units, layer checks, fuzz regression replays) under AddressSanitizer and
# UndefinedBehaviorSanitizer: a separate Debug build in build-sanitize/ (or $SANITIZE_BUILD_DIR),
# every report fatal. Usage: scripts/sanitize.sh [extra ctest arguments]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SANITIZE_BUILD_DIR:-$top/build-sanitize}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
# Only what `ctest -L unit` runs: the unit test executables, layer checks and fuzz replays.
targets=$(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(\(test\|layer_check\|replay\)_[a-z0-9_]*\).*/\1/p')
cmake --build "$build" -j2 --target $targets
# Every report stops the test: a sanitizer finding is a failed test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build" && ctest -L unit -j2 --output-on-failure "$@"
