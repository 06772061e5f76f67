#!/usr/bin/env bash
# README command (b): install, build, and run every test (C++ units, MPI integration runs at 1, 2
# and 3 ranks, HDF5 readers, the analysis toolkit). Tests that need ../shared skip with a message
# when it is absent, except under CI=true where its absence fails. Extra arguments go to every
# ctest call (e.g. -R pattern).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
bash "$repo/scripts/build.sh"
cd "$build"
# The single-process tests side by side; test_threads (up to 3 threads) and every suite that
# starts MPI ranks (PROCESSORS 3, tests/CMakeLists.txt) alone, so no test waits for a core
# another test holds.
ctest --output-on-failure --timeout 1200 -L unit -E '^unit\.test_threads$' -j"$(nproc)" "$@"
ctest --output-on-failure --timeout 1200 -R '^unit\.test_threads$' "$@"
ctest --output-on-failure --timeout 1200 -LE unit -j"$(nproc)" "$@"
