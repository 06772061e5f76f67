#!/usr/bin/env bash
# README command (a): install, build, and run the default job on 2 MPI ranks, then print a
# summary. Output: results/<job name>-<UTC time>.h5 (or OUT=FILE; an existing file is never
# overwritten unless FORCE=1).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
# The default job: the built-in digits classifier (jobs/default/, nothing to download). JOB=FILE
# runs another, e.g. JOB=jobs/stories260K-claims.ini (reads ../shared).
job=${JOB:-$repo/jobs/default.ini}
ranks=${RANKS:-2}
bash "$repo/scripts/build.sh" fracsweep
mkdir -p "$repo/results"
name=$(sed -n 's/^name *= *//p' "$job" | head -n 1)
out=${OUT:-$repo/results/$name-$(date -u +%Y%m%dT%H%M%SZ).h5}
flags=()
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
[ "$ranks" -gt "$(nproc)" ] && flags+=(--oversubscribe)
mpirun "${flags[@]}" -np "$ranks" "$build/fracsweep" run "$job" --out "$out" \
  ${FORCE:+--force}
