#!/bin/sh
# scripts/train.sh -- the README's train command: on a fresh Debian 12 machine,
# as root, installs missing packages (among them Debian's Fashion-MNIST data),
# builds libtensor in _build-train/ and trains the tutorial CNN on the real data
# (Debian's /usr/share/datasets/fashion-mnist, the trainer's default). Extra
# arguments go to `fashion_cnn train` (`sh scripts/train.sh --epochs 2`); the
# checkpoint, fashion_cnn.h5, lands in the current directory.
set -eu

TG_SCRIPT=train.sh
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

BUILD=_build-train
B="$TG_TOP/$BUILD"

stage "installing missing Debian packages"
tg_setup

stage "autoreconf -fi"
tg_bootstrap

stage "configure and build in $BUILD/"
tg_configure "$BUILD"
tg_make "$BUILD"

[ -x "$B/apps/fashion_cnn" ] || die "the build did not produce apps/fashion_cnn"
stage "training the Fashion-MNIST CNN: $BUILD/apps/fashion_cnn train $*"
status=0
"$B/apps/fashion_cnn" train "$@" || status=$?
note "next: $BUILD/apps/fashion_cnn evaluate (or predict, summary, featuremaps; --help)"
exit "$status"
