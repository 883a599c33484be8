#!/bin/sh
# tests/header_paths.sh -- the public headers find each other, never a program's own.
#
# Makes a decoy of every public header path a program might also have (ops/ops.h,
# nn/nn.h, io/dot.h, libtensor/tensor.h, ..., each a bare #error) in a folder that
# comes first on the include path, then compiles both examples against the real
# headers. The public headers include each other by paths relative to themselves,
# so the compiler looks beside the including header first and never reads a decoy.
#
#   tests/header_paths.sh            the source tree (-I$top_srcdir), by make check
#   tests/header_paths.sh CFLAGS...  other flags, as `make installcheck` passes
#                                    `pkg-config --cflags libtensor`
set -u
srcdir=${top_srcdir:-.}
if test -z "${TG_PUBLIC_HEADERS:-}"; then
    echo "header_paths: TG_PUBLIC_HEADERS is not set (run through make)"
    exit 99
fi
if test $# -gt 0; then
    flags="$*"
else
    flags="-I$srcdir"
fi

tmp=${TMPDIR:-/tmp}/tg-header-paths.$$
mkdir "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT

# the source paths, and the installed ones under libtensor/ (libtensor/ops/ops.h)
n=0
for h in $TG_PUBLIC_HEADERS; do
    test "$h" = libtensor.h && continue
    for p in "$h" "libtensor/$h"; do
        mkdir -p "$tmp/decoys/$(dirname "$p")" || exit 99
        printf '#error "a program'"'"'s own %s was read instead of libtensor'"'"'s"\n' "$p" \
            >"$tmp/decoys/$p"
        n=$((n + 1))
    done
done
mkdir -p "$tmp/decoys/libtensor"
printf '#error "a program'"'"'s own libtensor/libtensor.h was read"\n' \
    >"$tmp/decoys/libtensor/libtensor.h"

status=0
for ex in quickstart mlp_sgd; do
    # shellcheck disable=SC2086 # flags are several words
    if ${CC:-cc} -std=c11 -fsyntax-only -Werror=implicit-function-declaration \
        -I"$tmp/decoys" $flags "$srcdir/examples/$ex.c"; then
        echo "header_paths: examples/$ex.c compiles with $n decoy headers first on the path"
    else
        echo "header_paths: FAIL: examples/$ex.c with decoys in -I$tmp/decoys before $flags"
        status=1
    fi
done
exit $status
