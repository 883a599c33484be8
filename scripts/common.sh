# shellcheck shell=sh
# scripts/common.sh -- shared by scripts/test.sh and scripts/train.sh (sourced,
# not run): find the source tree, install packages, bootstrap and build out of
# tree. POSIX sh, so `sh scripts/x.sh` works with dash.

# The top of the source tree, whatever the caller's working directory.
TG_TOP=$(cd "$(dirname "$0")/.." && pwd)
# Parallel jobs: all cores unless the caller says otherwise.
TG_JOBS=${TG_JOBS:-$(nproc 2>/dev/null || echo 2)}

stage() { printf '\n==> %s\n' "$*"; }
note() { printf '%s: %s\n' "${TG_SCRIPT:-libtensor}" "$*"; }
die() { printf '%s: error: %s\n' "${TG_SCRIPT:-libtensor}" "$*" >&2; exit 1; }

# Installs missing Debian packages (a no-op when everything is there).
tg_setup() {
    sh "$TG_TOP/scripts/setup-debian.sh"
}

# Regenerates configure and Makefile.in from configure.ac and Makefile.am.
tg_bootstrap() {
    (cd "$TG_TOP" && autoreconf -fi)
}

# tg_configure DIR ARGS...: configures an out-of-tree build in $TG_TOP/DIR.
tg_configure() {
    tg_dir=$1
    shift
    mkdir -p "$TG_TOP/$tg_dir"
    (cd "$TG_TOP/$tg_dir" && ../configure "$@")
}

# tg_make DIR TARGET...: runs make in the build dir with $TG_JOBS jobs.
tg_make() {
    tg_dir=$1
    shift
    make -C "$TG_TOP/$tg_dir" -j"$TG_JOBS" "$@"
}
