#!/bin/sh
# tests/check_layers.sh -- the include direction of DESIGN.md, as a test.
#
# Library folders include only their own folder and those below them
# (libtensor < autograd < ops < nn; io knows libtensor and autograd, not ops or
# nn); only ops/ includes oneDNN; only io/ includes HDF5, zlib and libpng; apps/
# and examples/ use the public umbrella "libtensor.h" only; benchmarks/ may also
# use oneDNN (its baselines call it directly); tests/ may include anything. Library code never calls exit() or
# abort() (the forked child of io/h5safe.c alone ends with _exit). Before checking $top_srcdir the script checks a small tree of known
# good and bad files, so a checker that cannot fail fails too.
#
#   tests/check_layers.sh              self-test, then the source tree
#   tests/check_layers.sh --self-test  the self-test only
#   tests/check_layers.sh DIR          self-test, then DIR instead of $top_srcdir
set -u

# check_tree DIR: prints one "file:line: problem" per violation under DIR.
check_tree() {
    (
        cd "$1" || exit 99
        files=$(find libtensor autograd ops nn io apps examples benchmarks tests \
                    \( -name '*.c' -o -name '*.h' \) -type f 2>/dev/null | LC_ALL=C sort)
        [ -n "$files" ] || exit 0
        # shellcheck disable=SC2086 # file names of the tree: no spaces
        awk '
        BEGIN {
            allowed["libtensor"] = " libtensor "
            allowed["autograd"]  = " libtensor autograd "
            allowed["ops"]       = " libtensor autograd ops "
            allowed["nn"]        = " libtensor autograd ops nn "
            allowed["io"]        = " libtensor autograd io "
            project = " libtensor autograd ops nn io apps examples benchmarks tests "
        }
        function report(msg) { printf "%s:%d: %s\n", FILENAME, FNR, msg; bad++ }
        function exists(path,   tmp, r) {
            r = (getline tmp < path); close(path); return r >= 0
        }
        # Resolves "a/../b/./c" to "b/c"; "" when it climbs out of the tree.
        function normalize(path,   n, parts, out, depth, i) {
            n = split(path, parts, "/"); depth = 0
            for (i = 1; i <= n; i++) {
                if (parts[i] == "." || parts[i] == "") continue
                if (parts[i] == "..") { if (depth == 0) return ""; depth--; continue }
                out[++depth] = parts[i]
            }
            path = ""
            for (i = 1; i <= depth; i++) path = path (i > 1 ? "/" : "") out[i]
            return path
        }
        function first(path) { return index(path, "/") ? substr(path, 1, index(path, "/") - 1) : "" }
        # Removes comments (tracking /* */ across lines) and the contents of
        # string and character literals, so only code is left.
        function code_of(s,   out, c, i, q) {
            out = ""
            for (i = 1; i <= length(s); i++) {
                c = substr(s, i, 1)
                if (in_comment) {
                    if (substr(s, i, 2) == "*/") { in_comment = 0; i++ }
                    continue
                }
                if (substr(s, i, 2) == "/*") { in_comment = 1; i++; continue }
                if (substr(s, i, 2) == "//") break
                if (c == "\"" || c == "\047") {
                    q = c; out = out q
                    for (i++; i <= length(s) && substr(s, i, 1) != q; i++)
                        if (substr(s, i, 1) == "\\") i++
                    out = out q
                    continue
                }
                out = out c
            }
            return out
        }
        function third_party(inc,   base) {
            base = inc; sub(/.*\//, "", base)
            if (inc ~ /^oneapi\/dnnl\// || base ~ /^dnnl(_.*)?\.h(pp)?$/) return "oneDNN"
            if (base ~ /^(hdf5|hdf5_hl)\.h$/ || base ~ /^H5.*\.h$/) return "HDF5"
            if (base == "zlib.h" || base == "zconf.h") return "zlib"
            if (base == "png.h" || base == "pngconf.h") return "libpng"
            if (inc == "check.h") return "Check"
            return ""
        }
        FNR == 1 {
            in_comment = 0
            folder = first(FILENAME)
            dir = FILENAME; sub(/\/[^\/]*$/, "", dir)
            library = (folder in allowed)
        }
        {
            starts_in_comment = in_comment
            code = code_of($0)
        }
        !starts_in_comment && code ~ /^[ \t]*#[ \t]*include[ \t]*["<]/ {
            inc = $0
            sub(/^[ \t]*#[ \t]*include[ \t]*/, "", inc)
            quoted = substr(inc, 1, 1) == "\""
            inc = substr(inc, 2)
            if (quoted) sub(/".*/, "", inc)
            else sub(/>.*/, "", inc)

            # Where does it point: a file of the tree, or a system header?
            target = ""
            if (quoted && inc ~ /(^|\/)\.\.\//) {
                target = normalize(dir "/" inc)
                if (target == "") { report("#include \"" inc "\" climbs out of the source tree"); next }
            } else if (quoted && exists(dir "/" inc)) {
                target = normalize(dir "/" inc)
            } else if (exists(inc) || index(project, " " first(inc) " ") || inc == "libtensor.h") {
                target = normalize(inc)
            }

            if (target == "") {
                lib = third_party(inc)
                if (lib == "oneDNN" && !(folder == "ops" || folder == "tests" || folder == "benchmarks"))
                    report("includes oneDNN <" inc ">: only ops/ (and benchmarks/, tests/) may")
                else if ((lib == "HDF5" || lib == "zlib" || lib == "libpng") && !(folder == "io" || folder == "tests"))
                    report("includes " lib " <" inc ">: only io/ (and tests/) may")
                else if (lib == "Check" && folder != "tests")
                    report("includes Check <" inc ">: only tests/ may")
                next
            }

            tfolder = first(target)
            if (library) {
                if (tfolder == "" && target != "config.h")
                    report("includes \"" inc "\": library code may not use the umbrella header or top-level files")
                else if (tfolder != "" && !index(allowed[folder], " " tfolder " "))
                    report("includes \"" inc "\": " folder "/ may include only" allowed[folder] "headers")
            } else if (folder == "apps" || folder == "examples" || folder == "benchmarks") {
                if (target != "libtensor.h" && !(folder == "apps" && tfolder == "apps"))
                    report("includes \"" inc "\": " folder "/ may use only the public \"libtensor.h\"")
            }
            next
        }
        # one exception: the forked child of io/h5safe.c ends with _exit (it must not
        # return into the code of the caller nor run its atexit handlers)
        library && code ~ /(^|[^A-Za-z0-9_])(exit|_exit|_Exit|quick_exit|abort)[ \t]*\(/ &&
        !(FILENAME ~ /(^|\/)io\/h5safe\.c$/ && code ~ /(^|[^A-Za-z0-9_])_exit[ \t]*\(/ &&
          code !~ /(^|[^A-Za-z0-9_])(exit|_Exit|quick_exit|abort)[ \t]*\(/) {
            report("calls exit()/abort(): library code returns an error instead")
        }
        END { exit (bad > 0) }
        ' $files
    )
}

# Builds a tree of known good and bad files and checks that exactly the bad ones
# are reported.
self_test() {
    t=$(mktemp -d "${TMPDIR:-/tmp}/check_layers.XXXXXX") || return 99
    mkdir -p "$t/libtensor" "$t/autograd" "$t/ops" "$t/nn" "$t/io" "$t/apps" "$t/examples" "$t/benchmarks" "$t/tests"
    for h in libtensor/tensor.h libtensor/tensor_impl.h autograd/autograd.h ops/ops.h \
             ops/ops_impl.h nn/nn.h io/dot.h apps/models.h; do
        echo "/* $h */" >"$t/$h"
    done
    : >"$t/libtensor.h"
    : >"$t/config.h"

    # Files that must pass.
    cat >"$t/ops/good_ops.c" <<'EOF'
#include <stdio.h>
#include <oneapi/dnnl/dnnl.h>
#include "config.h"
#include "ops_impl.h"
#include "libtensor/tensor_impl.h"
#include "autograd/autograd.h"
/* #include "nn/nn.h" in a comment is not an include, and exit(1) here is no call */
/*
#include <hdf5.h>
   abort();
*/
static const char *msg = "do not exit(1) or abort() here";
static void cleanup(void) { (void)msg; }
int tg_good(void) { return atexit(cleanup); } // abort() in a line comment
EOF
    cat >"$t/io/good_io.c" <<'EOF'
#include <hdf5.h>
#include <zlib.h>
#include <png.h>
#include "libtensor/tensor.h"
#include "autograd/autograd.h"
#include "dot.h"
EOF
    printf '#include "libtensor/tensor.h"\n#include "ops/ops.h"\n#include "autograd/autograd.h"\n' >"$t/nn/good_nn.c"
    printf '#include <stdlib.h>\n#include "libtensor.h"\n#include "models.h"\nint main(void) { exit(0); }\n' >"$t/apps/good_app.c"
    printf '#include <oneapi/dnnl/dnnl.h>\n#include "libtensor.h"\n' >"$t/benchmarks/good_bench.c"
    printf '#include <libtensor.h>\n#include <math.h>\n' >"$t/examples/good_example.c"
    printf '#include <check.h>\n#include <hdf5.h>\n#include "libtensor/tensor_impl.h"\n#include "ops/ops_impl.h"\n' >"$t/tests/good_test.c"

    # Files that must be reported, one problem each.
    echo '#include "autograd/autograd.h"' >"$t/libtensor/bad_upward.c"
    echo '#include "../ops/ops.h"' >"$t/libtensor/bad_relative.c"
    echo '#include "nn/nn.h"' >"$t/io/bad_io_nn.c"
    echo '  #  include "ops/ops.h"' >"$t/io/bad_io_ops.c"
    echo '#include <oneapi/dnnl/dnnl.h>' >"$t/autograd/bad_dnnl.c"
    echo '#include <hdf5.h>' >"$t/ops/bad_hdf5.c"
    echo '#include <png.h>' >"$t/nn/bad_png.c"
    echo '#include "libtensor.h"' >"$t/ops/bad_umbrella.c"
    echo '#include "libtensor/tensor.h"' >"$t/apps/bad_app.c"
    echo '#include <oneapi/dnnl/dnnl.h>' >"$t/apps/bad_app_dnnl.c"
    echo '#include "ops/ops_impl.h"' >"$t/benchmarks/bad_bench.c"
    echo '#include "ops/ops_impl.h"' >"$t/examples/bad_example.c"
    echo '#include "../../outside.h"' >"$t/nn/bad_outside.c"
    printf 'void f(int x);\nvoid f(int x) { if (x) exit(1); }\n' >"$t/ops/bad_exit.c"
    printf 'void g(void);\nvoid g(void) { abort (); }\n' >"$t/io/bad_abort.c"

    out=$(check_tree "$t")
    status=$?
    ok=0
    if [ "$status" -ne 1 ]; then
        echo "self-test: expected exit status 1 on the bad sample, got $status"
        ok=1
    fi
    for f in $(cd "$t" && find . -name 'bad_*.c' | sed 's|^\./||' | LC_ALL=C sort); do
        n=$(printf '%s\n' "$out" | grep -c "^$f:")
        if [ "$n" -ne 1 ]; then
            echo "self-test: $f should give exactly one report, got $n"
            ok=1
        fi
    done
    if printf '%s\n' "$out" | grep -E 'good_'; then
        echo "self-test: the lines above report files that are fine"
        ok=1
    fi
    if [ "$ok" -ne 0 ]; then
        printf 'self-test output was:\n%s\n' "$out"
    fi
    rm -rf "$t"
    return "$ok"
}

if ! self_test; then
    echo "check_layers.sh: the self-test failed: the checker itself is broken"
    exit 99
fi
echo "check_layers.sh: self-test passed (bad samples reported, good ones not)"
[ "${1:-}" = "--self-test" ] && exit 0

top=${1:-${top_srcdir:-$(dirname "$0")/..}}
if [ ! -f "$top/libtensor/tensor.h" ]; then
    echo "check_layers.sh: $top does not look like the libtensor source tree"
    exit 99
fi
if out=$(check_tree "$top"); then
    echo "check_layers.sh: include direction and exit/abort rules hold in $top"
    exit 0
fi
printf '%s\n' "$out"
echo "check_layers.sh: $(printf '%s\n' "$out" | wc -l) violation(s) of DESIGN.md's layering"
exit 1
