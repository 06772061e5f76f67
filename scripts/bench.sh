#!/usr/bin/env bash
# Forward-pass benchmark: stories260K on the engine's evaluation batch (the first 50 paragraphs
# of tinystories_val.txt, 5,105 tokens). Builds fracsweep_bench if needed, then runs it once per
# BLIS kernel set named on the command line (default: auto, the engine's choice):
#
#   scripts/bench.sh                  # auto
#   scripts/bench.sh skx haswell      # compare kernel sets (one process each)
#
# Environment: FRACSWEEP_SHARED (default <repo>/../shared), BUILD_DIR (default <repo>/build),
# RUNS (timed runs per measurement, default 20), THREADS (BLIS threads, default 1).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${FRACSWEEP_SHARED:-$repo/../shared}
build=${BUILD_DIR:-$repo/build}

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target fracsweep_bench -j"$(nproc)" >/dev/null

for kernels in "${@:-auto}"; do
  "$build/fracsweep_bench" "$shared/models/stories260K/stories260K.bin" \
    "$shared/models/stories260K/tok512.bin" "$shared/data/tinystories/tinystories_val.txt" \
    "${RUNS:-20}" "${THREADS:-1}" "$kernels"
  echo
done
