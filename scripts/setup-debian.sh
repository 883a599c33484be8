#!/bin/sh
# scripts/setup-debian.sh -- install the Debian 12 packages libtensor needs to
# build, test and train. Installs only what is missing (so a second run is quick
# and needs no network), never asks a question, and works without root when
# nothing is missing.
#
#   sh scripts/setup-debian.sh            # as root, or: sudo sh scripts/setup-debian.sh
#   TG_EXTRA_PACKAGES="valgrind" sh scripts/setup-debian.sh   # add optional ones
set -eu

# What each package is for:
#   build-essential autoconf automake libtool pkg-config   the autotools build
#   libdnnl-dev        oneDNN 2.6, the kernels (no pkg-config file: m4/tg_check_dnnl.m4)
#   libhdf5-dev        checkpoints (HDF5 1.10)        hdf5-tools  h5dump, used by tests
#   zlib1g-dev         gzip'ed IDX files              libpng-dev  PNG images
#   check              the unit-test framework        graphviz    `dot`, renders graph exports
#   dataset-fashion-mnist   the real data, in /usr/share/datasets/fashion-mnist
#   clang libclang-rt-14-dev libomp-dev   `make fuzz`: clang, its libFuzzer and
#                      sanitizer runtimes (not pulled in by clang without
#                      recommends), and OpenMP for clang
PACKAGES="build-essential autoconf automake libtool pkg-config
libdnnl-dev libhdf5-dev hdf5-tools zlib1g-dev libpng-dev
check graphviz dataset-fashion-mnist
clang libclang-rt-14-dev libomp-dev"
PACKAGES="$PACKAGES ${TG_EXTRA_PACKAGES:-}"

say() { printf 'setup-debian: %s\n' "$*"; }

if ! command -v dpkg-query >/dev/null 2>&1; then
    say "dpkg-query not found: this is not a Debian system; skipping package installation."
    say "Install the equivalents of: $(echo "$PACKAGES" | tr '\n' ' ')"
    exit 0
fi

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    say "all required packages are installed."
    exit 0
fi

say "missing packages:$missing"
if [ "$(id -u)" -ne 0 ]; then
    say "error: installing them needs root. Run one of:" >&2
    say "    sudo sh scripts/setup-debian.sh" >&2
    say "    sudo apt-get install --no-install-recommends$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # $missing is a list of words on purpose
apt-get install -y --no-install-recommends $missing
say "installed:$missing"
