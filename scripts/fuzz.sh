#!/usr/bin/env bash
# Fuzzing the readers of untrusted bytes (fuzz/): build, seed, run. One clang-14 tree
# (build-fuzz/) serves both fuzzing and scripts/sanitize.sh: every library is built with
# -fsanitize=fuzzer-no-link,address,undefined (-DFRACSWEEP_FUZZ=ON), the fuzz targets add
# libFuzzer's main, the unit tests link the same libraries with ASan+UBSan only.
#
#   scripts/fuzz.sh configure          configure the tree (clang-14, -O1, unit tests included)
#   scripts/fuzz.sh build              configure and build every fuzz target
#   scripts/fuzz.sh seeds              write seed corpora (build-fuzz/seeds/) from ../shared, jobs/
#                                      and fuzz/seeds/
#   scripts/fuzz.sh run [SECONDS] [TARGET...]
#                                      build, seed, then run each target (all by default) for
#                                      SECONDS (default 20) or FUZZ_RUNS executions, whichever
#                                      comes first, one after another, one process each; prints
#                                      executions, seconds and findings per target and exits 1
#                                      when any target found something (artifacts:
#                                      build-fuzz/findings/<target>/, logs: build-fuzz/logs/;
#                                      the corpus grows in build-fuzz/corpus/<target>/)
#   scripts/fuzz.sh smoke [SECONDS]    the CI smoke: like run, but from the seeds and the
#                                      committed regression inputs only (default 10 s per target)
#   scripts/fuzz.sh replay FILE...     runs every target once over the given inputs
#
# Environment: FRACSWEEP_SHARED (default ../shared), FUZZ_BUILD_DIR (default build-fuzz),
# FUZZ_RUNS (executions per target for run; default unlimited), FUZZ_NICE (niceness of the
# fuzzing processes; default 0, campaigns on a shared machine use 19), FUZZ_TIMEOUT (seconds
# one input may take; default 10: wall clock, so a starved niced campaign needs more).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
shared=${FRACSWEEP_SHARED:-$top/../shared}
targets_all=($(sed -n 's/^ *"\([a-z0-9_]*\):.*/\1/p' "$top/fuzz/targets.cmake"))

configure_tree() {
  # Build type "Fuzz": -O1 with line tables (fast to build, fast enough to fuzz, exact stack
  # traces); no NDEBUG, so assertions stay on. The nn and eval layers keep their own -O3.
  CC=clang-14 CXX=clang++-14 cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Fuzz \
    -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" \
    -DFRACSWEEP_FUZZ=ON -DBUILD_TESTING=ON \
    ${FRACSWEEP_SHARED:+-DFRACSWEEP_SHARED_DIR="$FRACSWEEP_SHARED"} >/dev/null
}

build_tree() {
  configure_tree
  cmake --build "$build" -j"$(nproc)" --target fuzz_all
}

write_seeds() {
  /usr/bin/python3 "$top/fuzz/make_seeds.py" --shared "$shared" --jobs "$top/jobs" \
    --own "$top/fuzz/seeds" --out "$build/seeds"
}

# run_target TARGET SECONDS RUNS CORPUS...: fuzzes TARGET; the first corpus folder receives
# the new inputs, the others are read only.
run_target() {
  local target=$1 seconds=$2 runs=$3
  shift 3
  local findings="$build/findings/$target" log="$build/logs/$target.log"
  rm -rf "$findings"  # a finding of an earlier run is fixed (or kept elsewhere) by now
  mkdir -p "$findings" "$build/logs" "$1"
  # One process (no -fork: it would reload the corpus every few seconds); it stops at its
  # first finding (crash, leak, UB report, timeout, out-of-memory), written to $findings.
  local start=$SECONDS
  nice -n "${FUZZ_NICE:-0}" "$build/fuzz/fuzz_$target" "$@" -max_total_time="$seconds" \
    -runs="$runs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || true
  local executions found
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [ -n "$executions" ] || executions=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  # crash- (crashes, sanitizer reports, escaped exceptions), leak-, timeout-, oom-; not
  # slow-unit- (an input over 10 s once: on a loaded machine, a descheduled process).
  found=$(find "$findings" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  printf '%-12s executions %-10s seconds %-6s findings %s\n' "$target" "${executions:-0}" \
    "$((SECONDS - start))" "$found"
  # No execution at all (a target that cannot start) is a failure too.
  [ "$found" -eq 0 ] && [ "${executions:-0}" -gt 0 ]
}

# fuzz_all_targets SECONDS RUNS MODE TARGET...: reads the seeds (build-fuzz/seeds/<target>) and
# the committed regressions; MODE "run" grows build-fuzz/corpus/<target> across runs, "smoke"
# starts from nothing else each time.
fuzz_all_targets() {
  local seconds=$1 runs=$2 mode=$3
  shift 3
  local targets=("$@") status=0
  [ ${#targets[@]} -gt 0 ] || targets=("${targets_all[@]}")
  build_tree
  write_seeds
  for target in "${targets[@]}"; do
    local regressions="$top/tests/fuzz_regressions/$target" corpora=("$build/corpus/$target")
    if [ "$mode" = smoke ]; then
      rm -rf "$build/smoke/$target"
      corpora=("$build/smoke/$target")
    fi
    corpora+=("$build/seeds/$target")
    [ -d "$regressions" ] && corpora+=("$regressions")
    run_target "$target" "$seconds" "$runs" "${corpora[@]}" || status=1
  done
  [ $status -eq 0 ] || echo "findings: see $build/findings/<target>/ and $build/logs/<target>.log"
  return $status
}

# The whole command is one function, read before it runs: editing this file while a long
# campaign runs does not change what the running campaign executes.
main() {
  command=${1:-run}
  case "$command" in
    configure) configure_tree ;;
    build) build_tree ;;
    seeds) write_seeds ;;
    run)
      seconds=${2:-20}
      shift $(($# > 1 ? 2 : $#))
      fuzz_all_targets "$seconds" "${FUZZ_RUNS:--1}" run "$@"
      ;;
    smoke)
      fuzz_all_targets "${2:-10}" -1 smoke
      ;;
    replay)
      shift
      for target in "${targets_all[@]}"; do "$build/fuzz/fuzz_$target" "$@" >/dev/null 2>&1 || {
        echo "fuzz_$target fails on the given inputs"
        exit 1
      }; done
      ;;
    *)
      echo "usage: $0 configure | build | seeds | run [SECONDS] [TARGET...] | smoke [SECONDS] |" \
        "replay FILE..." >&2
      exit 2
      ;;
  esac
}
main "$@"
exit
