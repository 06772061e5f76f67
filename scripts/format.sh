#!/usr/bin/env bash
# The C++ layout rules (.clang-format, clang-format 14 from Debian) over every source and header
# of src/, include/, tests/ and fuzz/.
#
#   scripts/format.sh           rewrites the files in place
#   scripts/format.sh --check   changes nothing; lists the files that differ and exits 1 if any
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
tool=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$tool" ]; then
  echo "format.sh: clang-format not found (Debian package clang-format; scripts/install-deps.sh)" >&2
  exit 2
fi
mapfile -t files < <(git ls-files -- 'src/*.cpp' 'src/*.hpp' 'include/*.hpp' 'tests/*.cpp' \
                                      'tests/*.hpp' 'fuzz/*.cpp' 'fuzz/*.hpp')
if [ "${1:-}" = "--check" ]; then
  differing=()
  for file in "${files[@]}"; do
    "$tool" --style=file "$file" | cmp -s - "$file" || differing+=("$file")
  done
  if [ ${#differing[@]} -gt 0 ]; then
    printf 'format.sh: not formatted (run scripts/format.sh): %s\n' "${differing[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  "$tool" --style=file -i "${files[@]}"
fi
