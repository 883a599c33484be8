/* libtensor.h -- the umbrella header: everything a program needs.
 *
 *   #include <libtensor.h>
 *   cc app.c $(pkg-config --cflags --libs libtensor)
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
