#!/usr/bin/env bash
# The unit tests (C++ units, layer checks, fuzz regression replays) under AddressSanitizer and
# UndefinedBehaviorSanitizer, every report fatal. They build in the clang-14 tree of
# scripts/fuzz.sh (build-fuzz/, or $FUZZ_BUILD_DIR; -O1, assertions on), whose libraries are
# instrumented with -fsanitize=address,undefined (and libFuzzer's coverage, inert without it).
# Usage: scripts/sanitize.sh [extra ctest arguments]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
bash "$top/scripts/fuzz.sh" configure
# test_threads is built but left to the release suite: its 3-thread cases oversubscribe a
# 2-core CI machine, where BLIS's spinning barriers make it minutes long even at -O3.
cmake --build "$build" -j"$(nproc)" --target unit_test_executables
# Every report stops the test: a sanitizer finding is a failed test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build" && ctest -L unit -E '^unit\.test_threads$' -j"$(nproc)" --output-on-failure "$@"
