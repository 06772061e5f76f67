#!/usr/bin/env bash
# CI's checks of the code that reads untrusted bytes, in one clang-14 tree (build-fuzz/): the
# unit tests under ASan+UBSan (scripts/sanitize.sh), then a short libFuzzer smoke of every fuzz
# target from its seeds and committed regressions (scripts/fuzz.sh smoke). Any sanitizer
# report, failed test, or fuzz finding (crash, leak, UB, timeout, out-of-memory) fails it.
# Installs clang-14 and its runtimes (libFuzzer, sanitizers) from Debian when missing.
# Environment: FUZZ_SMOKE_SECONDS (per target; default 10), and those of the two scripts.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
packages=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "check-untrusted: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
start=$SECONDS
bash "$top/scripts/sanitize.sh"
echo "check-untrusted: sanitizer unit tests done after $((SECONDS - start)) s"
bash "$top/scripts/fuzz.sh" smoke "${FUZZ_SMOKE_SECONDS:-10}"
echo "check-untrusted: fuzz smoke done after $((SECONDS - start)) s"
