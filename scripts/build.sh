#!/usr/bin/env bash
# Installs the Debian packages (scripts/install-deps.sh) and builds fracsweep into build/:
# every target, or only the targets named as arguments (e.g. `build.sh fracsweep`).
# Environment: BUILD_DIR (default <repo>/build), BUILD_TYPE (default Release),
# FRACSWEEP_SHARED (shared models/data for the tests; default <repo>/../shared),
# FRACSWEEP_WERROR (ON turns warnings into errors; CI sets it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
bash "$repo/scripts/install-deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DFRACSWEEP_WERROR="${FRACSWEEP_WERROR:-OFF}" \
  ${FRACSWEEP_SHARED:+-DFRACSWEEP_SHARED_DIR="$FRACSWEEP_SHARED"} >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$build" -j"$(nproc)" --target "$@"
else
  cmake --build "$build" -j"$(nproc)"
fi
