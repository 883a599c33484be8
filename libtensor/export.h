/* libtensor/export.h -- which declarations libtensor.so exports.
 *
 * The library is compiled with -fvisibility=hidden (configure.ac), so a function
 * or object is exported only when a public header declares it: each public header
 * wraps its declarations in TG_API_BEGIN ... TG_API_END, which push and pop GCC's
 * default visibility (clang reads the same pragma). Private headers (*_impl.h)
 * do not, so what they declare stays inside the library and its tests.
 *
 * A pragma around each header rather than a macro on each declaration (libuv's
 * UV_EXTERN) because the rule is then "declared in a public header = exported":
 * nobody adding an op or a layer can forget a per-function marking (which would
 * surface only as a link error in a user's program), and the declarations read
 * as before. tests/symbols.sh checks the other direction: nothing that no public
 * header declares is exported. A user's own program is unaffected: its extern
 * declarations of our functions get the default visibility they had anyway. */
#ifndef TG_EXPORT_H
#define TG_EXPORT_H

#if defined(__GNUC__) && !defined(_WIN32)
#define TG_API_BEGIN _Pragma("GCC visibility push(default)")
#define TG_API_END _Pragma("GCC visibility pop")
#else
#define TG_API_BEGIN
#define TG_API_END
#endif

#endif
