#!/usr/bin/env bash
# Fuzzing the readers of untrusted bytes (fuzz/): build, seed, run.
#
#   scripts/fuzz.sh build              configure and build the fuzz tree (build-fuzz/, clang-14)
#   scripts/fuzz.sh seeds              write seed corpora from ../shared, jobs/ and fuzz/seeds/
#   scripts/fuzz.sh run [SECONDS] [TARGET...]
#                                      build, seed, then run each target (all by default) for
#                                      SECONDS (default 20), one after another, one process each;
#                                      prints executions and findings per target and exits 1
#                                      when any target found something (artifacts: build-fuzz/findings/)
#   scripts/fuzz.sh replay FILE...     runs every target once over the given inputs
#
# Environment: FRACSWEEP_SHARED (default ../shared), FUZZ_BUILD_DIR (default build-fuzz).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
shared=${FRACSWEEP_SHARED:-$top/../shared}
targets_all=(llama2c tokenizer gguf safetensors json sequential npy idx hf_config job journal probes)

build_tree() {
  CC=clang-14 CXX=clang++-14 cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFRACSWEEP_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$build" -j2 --target fuzz_all
}


write_seeds() {
  /usr/bin/python3 "$top/fuzz/make_seeds.py" --shared "$shared" --jobs "$top/jobs" \
    --own "$top/fuzz/seeds" --out "$build/corpus"
}

run_target() {
  local target=$1 seconds=$2
  local findings="$build/findings/$target" log="$build/logs/$target.log"
  mkdir -p "$findings" "$build/logs" "$build/corpus/$target"
  # -fork=1 -ignore_crashes=1: one worker process that keeps fuzzing after a finding, so one
  # run reports every distinct crash, leak, timeout and out-of-memory input it meets.
  "$build/fuzz/fuzz_$target" "$build/corpus/$target" -fork=1 -ignore_crashes=1 -ignore_ooms=1 \
    -ignore_timeouts=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || true
  local executions found
  executions=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  found=$(find "$findings" -type f | wc -l)
  printf '%-12s executions %-10s findings %s\n' "$target" "${executions:-0}" "$found"
  [ "$found" -eq 0 ]
}

command=${1:-run}
case "$command" in
  build) build_tree ;;
  seeds) write_seeds ;;
  run)
    seconds=${2:-20}
    shift $(( $# > 1 ? 2 : $# ))
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${targets_all[@]}")
    build_tree
    write_seeds
    status=0
    for target in "${targets[@]}"; do run_target "$target" "$seconds" || status=1; done
    [ $status -eq 0 ] || echo "findings: see $build/findings/<target>/ and $build/logs/<target>.log"
    exit $status
    ;;
  replay)
    shift
    for target in "${targets_all[@]}"; do "$build/fuzz/fuzz_$target" "$@" >/dev/null 2>&1 || {
      echo "fuzz_$target fails on the given inputs"; exit 1; }
    done
    ;;
  *) echo "usage: $0 build | seeds | run [SECONDS] [TARGET...] | replay FILE..." >&2; exit 2 ;;
esac
