/* include/libtensor.h -- installed as <includedir>/libtensor.h: the one line a
 * program writes, #include <libtensor.h>, with -I<includedir> (pkg-config).
 *
 * The public headers are installed under <includedir>/libtensor/ with the source
 * tree's folders (libtensor/libtensor.h is the umbrella, libtensor/ops/ops.h ...)
 * and include each other by paths relative to themselves, so no folder named
 * ops/, nn/ or io/ is on the program's include path, and a program's own
 * ops/ops.h can never stand in for ours. Not used inside the source tree, where
 * the top-level libtensor.h is found directly. */
#ifndef TG_INSTALLED_LIBTENSOR_H
#define TG_INSTALLED_LIBTENSOR_H
#include "libtensor/libtensor.h"
#endif
