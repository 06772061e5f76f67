#!/usr/bin/env bash
# Forward-pass benchmark: stories260K on the engine's evaluation batch (the first 50 paragraphs
# of tinystories_val.txt, 5,105 tokens). Builds fracsweep_bench if needed, then runs it once per
# BLIS kernel set named on the command line (default: auto, the engine's choice):
#
#   scripts/bench.sh                  # auto
#   scripts/bench.sh skx haswell      # compare kernel sets (one process each)
#
# Then the baseline's 256-token greedy continuation, KV-cached (the engine) against decoding on
# the growing prefix (the old O(n^2) method), on stories260K and on random-weight Llamas of the
# shapes in GREEDY_SHAPES (default "110M"; add "1.1B" for the KV-cached side at 1.1B, ~5 GB of
# memory; "" skips the random shapes).
#
# Then thread scaling: at 1 and 2 threads per rank, the share of a forward pass outside BLIS and
# the forward / GEMM rate, on stories260K and on the shapes in THREAD_SHAPES (default "110M"; ""
# skips it). Measure on a quiet machine (uptime): threads that wait for a busy core stall.
#
# Environment: FRACSWEEP_SHARED (default <repo>/../shared), BUILD_DIR (default <repo>/build),
# RUNS (timed runs per measurement, default 20), THREADS (threads per rank, default 1),
# GREEDY_SHAPES (see above).
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
# shellcheck disable=SC2086  # GREEDY_SHAPES is a list of words
"$build/fracsweep_bench" --greedy "$shared/models/stories260K/stories260K.bin" ${GREEDY_SHAPES-110M}
echo
# shellcheck disable=SC2086  # THREAD_SHAPES is a list of words
"$build/fracsweep_bench" --threads "$shared/models/stories260K/stories260K.bin" \
  "$shared/models/stories260K/tok512.bin" "$shared/data/tinystories/tinystories_val.txt" \
  "${RUNS:-20}" ${THREAD_SHAPES-110M}
