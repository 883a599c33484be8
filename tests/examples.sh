#!/bin/sh
# tests/examples.sh -- runs the example programs (built by `make check`) and
# checks that each exits 0: mlp_sgd and custom_layer exit non-zero when their loss
# did not fall, a reloaded checkpoint differs or something leaked. Also checks that README.md shows examples/quickstart.c
# verbatim, so the README's example is always one that compiles and runs.
set -u

src=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
status=0

for ex in quickstart mlp_sgd custom_layer; do
    prog="$build/examples/$ex"
    if [ ! -x "$prog" ]; then
        echo "examples.sh: $prog is missing (make check builds it)"
        exit 99
    fi
    echo "==> examples/$ex"
    "$prog"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "examples/$ex: ok"
    else
        echo "examples/$ex: FAILED (exit status $rc)"
        status=1
    fi
done

# The README's ```c block that follows the line naming examples/quickstart.c.
readme_code=$(awk '
    /examples\/quickstart\.c/ && !seen { armed = 1 }
    armed && /^```c[ \t]*$/ { inside = 1; armed = 0; seen = 1; next }
    inside && /^```[ \t]*$/ { exit }
    inside { print }
' "$src/README.md")
if [ "$readme_code" = "$(cat "$src/examples/quickstart.c")" ]; then
    echo "README.md: its C example is examples/quickstart.c"
else
    echo "README.md: its C example differs from examples/quickstart.c; keep them identical:"
    printf '%s\n' "$readme_code" | diff -u "$src/examples/quickstart.c" - | head -40
    status=1
fi
exit $status
