#!/bin/sh
# tests/symbols.sh -- the shared library exports its public API and nothing else.
#
# Lists the dynamic symbols that .libs/libtensor.so defines (nm -D --defined-only)
# and fails on any that no public header declares. "Declared" means the name
# occurs in the text of an installed header ($TG_PUBLIC_HEADERS, from Makefile.am)
# once the preprocessor has removed the comments: the umbrella header is run
# through $CC -E and only the lines that come from those headers are kept (its
# line markers say which file each line is from). The other way round, it fails
# on a function those headers declare (other than a static inline one) that the
# library does not export: a header without TG_API_BEGIN/TG_API_END, or a
# declaration nobody defines. Reports the counts. Skipped
# (77) when the library is not built shared (the sanitizer build) or nm is missing.
set -u
srcdir=${top_srcdir:-.}
builddir=${top_builddir:-.}
so=$builddir/.libs/libtensor.so

if ! test -f "$so"; then
    echo "symbols: $so was not built (static-only build): skipped"
    exit 77
fi
if ! command -v "${NM:-nm}" >/dev/null 2>&1; then
    echo "symbols: nm was not found: skipped"
    exit 77
fi
if test -z "${TG_PUBLIC_HEADERS:-}"; then
    echo "symbols: TG_PUBLIC_HEADERS is not set (run through make check)"
    exit 99
fi

tmp=${TMPDIR:-/tmp}/tg-symbols.$$
mkdir "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT

# the exported names; ld's own markers (_init, _edata, ...) are not ours
"${NM:-nm}" -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' |
    grep -v -x -e _init -e _fini -e _edata -e _end -e __bss_start |
    sort -u >"$tmp/exported"

# every identifier in the public headers, comments removed by the preprocessor
printf '#include "libtensor.h"\n' >"$tmp/all.c"
if ! ${CC:-cc} -E -I"$srcdir" "$tmp/all.c" >"$tmp/all.i"; then
    echo "symbols: the public headers do not preprocess"
    exit 1
fi
for h in $TG_PUBLIC_HEADERS; do
    echo "$h"
done >"$tmp/headers"
awk -v srcdir="$srcdir" -v list="$tmp/headers" '
    # resolves "." and ".." and doubled slashes, as the compiler may spell paths
    function norm(path,    n, i, k, c, out, parts, res) {
        n = split(path, parts, "/")
        k = 0
        for (i = 1; i <= n; i++) {
            c = parts[i]
            if (c == "" && i > 1 || c == ".")
                continue
            if (c == ".." && k > 0 && res[k] != ".." && res[k] != "") {
                k--
                continue
            }
            res[++k] = c
        }
        out = ""
        for (i = 1; i <= k; i++)
            out = out (i > 1 ? "/" : "") res[i]
        return out
    }
    BEGIN { while ((getline h < list) > 0) public[norm(srcdir "/" h)] = 1 }
    /^# [0-9]+ "/ { f = $3; gsub(/"/, "", f); keep = (norm(f) in public); next }
    keep { print }
' "$tmp/all.i" >"$tmp/public.i"
grep -o '[A-Za-z_][A-Za-z0-9_]*' "$tmp/public.i" | sort -u >"$tmp/declared"
# the functions they declare (a name before "("), less static inline ones
tr '\n' ' ' <"$tmp/public.i" >"$tmp/public.line"
grep -o 'tg_[a-z0-9_]* *(' "$tmp/public.line" | tr -d ' (' | sort -u >"$tmp/functions"
grep -o 'static[^;{}]*[^a-z0-9_]tg_[a-z0-9_]* *(' "$tmp/public.line" |
    grep -o 'tg_[a-z0-9_]* *($' | tr -d ' (' | sort -u >"$tmp/inline"

if ! test -s "$tmp/declared"; then
    echo "symbols: found no declarations in the public headers (line markers not understood?)"
    exit 99
fi

comm -23 "$tmp/exported" "$tmp/declared" >"$tmp/extra"
comm -23 "$tmp/functions" "$tmp/inline" | comm -23 - "$tmp/exported" >"$tmp/missing"
n_exp=$(wc -l <"$tmp/exported" | tr -d ' ')
n_extra=$(wc -l <"$tmp/extra" | tr -d ' ')
n_fn=$(wc -l <"$tmp/functions" | tr -d ' ')
n_missing=$(wc -l <"$tmp/missing" | tr -d ' ')
echo "symbols: libtensor.so exports $n_exp symbols; $n_extra of them in no public header"
echo "symbols: the public headers declare $n_fn functions; $n_missing of them not exported"
status=0
if test "$n_extra" -ne 0; then
    sed 's/^/  not in a public header: /' "$tmp/extra"
    echo "symbols: FAIL: declare them in a public header, or keep them internal"
    status=1
fi
if test "$n_missing" -ne 0; then
    sed 's/^/  declared but not exported: /' "$tmp/missing"
    echo "symbols: FAIL: a public header without TG_API_BEGIN/TG_API_END, or no definition"
    status=1
fi
exit $status
