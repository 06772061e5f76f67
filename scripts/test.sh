#!/usr/bin/env bash
# README command (b): install, build, and run every test (C++ units, MPI integration runs at 1, 2
# and 3 ranks, HDF5 readers, the analysis toolkit). Tests that need ../shared skip with a message
# when it is absent, except under CI=true where its absence fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
bash "$repo/scripts/build.sh"
cd "$build"
ctest --output-on-failure --timeout 1200 "$@"
