/* libtensor.h -- the umbrella header: everything a program needs.
 *
 *   #include <libtensor.h>
 *   cc app.c $(pkg-config --cflags --libs libtensor)
 *
 * Installed as <includedir>/libtensor/libtensor.h, reached through the one-line
 * <includedir>/libtensor.h (include/libtensor.h). A public header includes the
 * others by paths relative to itself ("../libtensor/tensor.h"), includes
 * "export.h" and wraps its declarations in TG_API_BEGIN/TG_API_END (what it
 * declares is exported), and is listed in Makefile.am's nobase_tginclude_HEADERS
 * (tests/symbols.sh and tests/header_paths.sh read that list).
 */
#ifndef LIBTENSOR_H
#define LIBTENSOR_H

#include "libtensor/error.h"
#include "libtensor/tensor.h"
#include "libtensor/scope.h"
#include "libtensor/rng.h"
#include "libtensor/state_dict.h"
#include "libtensor/runtime.h"
#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "autograd/graph.h"
#include "ops/ops.h"
#include "nn/nn.h"
#include "io/dot.h"
#include "io/idx.h"
#include "io/dataset.h"
#include "io/checkpoint.h"
#include "io/image.h"

#endif
