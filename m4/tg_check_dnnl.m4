# TG_CHECK_DNNL
# -------------
# oneDNN (Debian: libdnnl-dev) ships no pkg-config file, so look for it by hand:
# the header oneapi/dnnl/dnnl.h and the symbol dnnl_engine_create in -ldnnl.
# --with-dnnl=PREFIX looks in PREFIX/include and PREFIX/lib (or lib64) first; a
# non-system PREFIX/lib must also be known to the loader (LD_LIBRARY_PATH).
# Sets and substitutes DNNL_CFLAGS, DNNL_LIBS and TG_DNNL_CONFIGURE_ARG, or stops
# configure with a message that names the Debian package.
AC_DEFUN([TG_CHECK_DNNL], [
  AC_ARG_WITH([dnnl],
    [AS_HELP_STRING([--with-dnnl=PREFIX], [where oneDNN is installed (default: the system paths)])],
    [], [with_dnnl=check])
  AS_CASE([$with_dnnl],
    [no], [AC_MSG_ERROR([libtensor cannot be built without oneDNN (--without-dnnl was given)])],
    [yes|check|""], [DNNL_CFLAGS=""; DNNL_LIBS="-ldnnl"],
    [DNNL_CFLAGS="-I$with_dnnl/include"
     # oneDNN's CMake install uses lib/ or, on some systems, lib64/.
     tg_dnnl_libdir="$with_dnnl/lib"
     AS_IF([test ! -e "$tg_dnnl_libdir/libdnnl.so" && test -e "$with_dnnl/lib64/libdnnl.so"],
           [tg_dnnl_libdir="$with_dnnl/lib64"])
     DNNL_LIBS="-L$tg_dnnl_libdir -ldnnl"])
  tg_save_CPPFLAGS=$CPPFLAGS
  tg_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $DNNL_CFLAGS"
  LIBS="$DNNL_LIBS $LIBS"
  AC_CHECK_HEADER([oneapi/dnnl/dnnl.h], [],
    [AC_MSG_ERROR([oneDNN header oneapi/dnnl/dnnl.h not found. On Debian: apt-get install libdnnl-dev (or pass --with-dnnl=PREFIX)])])
  AC_MSG_CHECKING([for dnnl_engine_create in $DNNL_LIBS])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <oneapi/dnnl/dnnl.h>]],
                                  [[dnnl_engine_t e; return (int) dnnl_engine_create(&e, dnnl_cpu, 0);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([cannot link against oneDNN ($DNNL_LIBS). On Debian: apt-get install libdnnl-dev (or pass --with-dnnl=PREFIX)])])
  CPPFLAGS=$tg_save_CPPFLAGS
  LIBS=$tg_save_LIBS
  AC_SUBST([DNNL_CFLAGS])
  AC_SUBST([DNNL_LIBS])
  # The option again, for the builds that make runs itself (check-asan, distcheck).
  AS_CASE([$with_dnnl], [yes|check|""], [TG_DNNL_CONFIGURE_ARG=""],
          [TG_DNNL_CONFIGURE_ARG="--with-dnnl=$with_dnnl"])
  AC_SUBST([TG_DNNL_CONFIGURE_ARG])
])
