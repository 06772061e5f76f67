#!/usr/bin/env bash
# Installs every Debian 12 package fracsweep needs to build, test and analyse.
# Idempotent; needs root (or sudo). No network beyond Debian's archive.
set -euo pipefail
packages=(
  build-essential cmake pkg-config git iproute2
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  zlib1g-dev
  libblis-openmp-dev
  libboost-program-options-dev libboost-test-dev
  nlohmann-json3-dev clang-format
  python3-h5py python3-numpy python3-scipy python3-pandas python3-matplotlib
  python3-xarray python3-h5netcdf python3-pytest python3-sklearn python3-tables
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
