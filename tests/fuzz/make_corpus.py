#!/usr/bin/env python3
# tests/fuzz/make_corpus.py -- regenerates the seed corpora tests/fuzz/corpus/idx/ and
# tests/fuzz/corpus/image/ from the real Fashion-MNIST files (Debian's
# dataset-fashion-mnist package) and the Python standard library only.
# Run it from anywhere: python3 tests/fuzz/make_corpus.py [DATA_DIR]. The output is
# checked in; the build never runs this script.
import gzip, os, struct, sys, zlib

data_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
here = os.path.dirname(os.path.abspath(__file__))

def out(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def gz(b):
    return gzip.compress(b, compresslevel=9, mtime=0)

images = gzip.open(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")).read()
labels = gzip.open(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")).read()
assert images[:4] == b"\0\0\x08\x03" and labels[:4] == b"\0\0\x08\x01"

# ---- IDX: slices of the real t10k files, plain and gzip, and one file per type
N = 10
img10 = b"\0\0\x08\x03" + struct.pack(">III", N, 28, 28) + images[16:16 + N * 784]
lbl10 = b"\0\0\x08\x01" + struct.pack(">I", N) + labels[8:8 + N]
out("idx", "t10k-images-10", img10)
out("idx", "t10k-images-10.gz", gz(img10))
out("idx", "t10k-labels-10", lbl10)
out("idx", "t10k-labels-10.gz", gz(lbl10))
img2 = b"\0\0\x08\x03" + struct.pack(">III", 2, 28, 28) + images[16:16 + 2 * 784]
out("idx", "t10k-images-2", img2)
pix = images[16:16 + 24]  # real pixel values, reinterpreted per type
def idx(code, dims, payload):
    return b"\0\0" + bytes([code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload
out("idx", "i8-2x3", idx(0x09, [2, 3], pix[:6]))
out("idx", "i16-4", idx(0x0B, [4], struct.pack(">4h", *[p - 128 for p in pix[:4]])))
out("idx", "i32-3x2", idx(0x0C, [3, 2], struct.pack(">6i", *[p * 1000 - 5 for p in pix[:6]])))
out("idx", "f32-2x2x2", idx(0x0D, [2, 2, 2], struct.pack(">8f", *[p / 255 for p in pix[:8]])))
out("idx", "f64-5", idx(0x0E, [5], struct.pack(">5d", *[p / 255 for p in pix[:5]])))
out("idx", "u8-1x1x1x1x1x1x1x2", idx(0x08, [1] * 7 + [2], pix[:2]))
out("idx", "u8-empty-0x28", idx(0x08, [0, 28], b""))
out("idx", "f32-2x2x2.gz", gz(idx(0x0D, [2, 2, 2], struct.pack(">8f", *[p / 255 for p in pix[:8]]))))
# two gzip members, as `cat a.gz b.gz` makes
out("idx", "t10k-labels-10-two-members.gz", gz(lbl10[:8]) + gz(lbl10[8:]))

# ---- images: the first test image as PNGs of each colour type and as PGMs
img = images[16:16 + 784]
rows = [img[r * 28:(r + 1) * 28] for r in range(28)]

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

def png(w, h, depth, ctype, raw_rows, extra=b"", interlace=0):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    idat = zlib.compress(b"".join(b"\0" + r for r in raw_rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", idat) + chunk(b"IEND", b"")

out("image", "gray8-28x28.png", png(28, 28, 8, 0, rows))
out("image", "gray16-28x28.png", png(28, 28, 16, 0, [bytes(x for p in r for x in (p, p)) for r in rows]))
out("image", "rgb-28x28.png", png(28, 28, 8, 2, [bytes(x for p in r for x in (p, 255 - p, p // 2)) for r in rows]))
out("image", "rgba-28x28.png", png(28, 28, 8, 6, [bytes(x for p in r for x in (p, p, p, 200)) for r in rows]))
out("image", "graya-28x28.png", png(28, 28, 8, 4, [bytes(x for p in r for x in (p, 255)) for r in rows]))
pal = bytes(x for i in range(16) for x in (i * 17, i * 17, i * 17))
out("image", "palette4-28x28.png", png(28, 28, 4, 3, [bytes((r[2 * i] >> 4) << 4 | (r[2 * i + 1] >> 4) for i in range(14)) for r in rows], chunk(b"PLTE", pal)))
out("image", "gray1-16x8.png", png(16, 8, 1, 0, [bytes([0xAA if y % 2 else 0x55, 0x0F]) for y in range(8)]))
# Adam7 interlacing: the seven passes of the same image
passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
raw = b""
for x0, y0, dx, dy in passes:
    for y in range(y0, 28, dy):
        line = bytes(rows[y][x] for x in range(x0, 28, dx))
        if line:
            raw += b"\0" + line
ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 1)
out("image", "gray8-interlaced-28x28.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
out("image", "p5-28x28.pgm", b"P5\n# a Fashion-MNIST test image\n28 28\n255\n" + img)
out("image", "p5-16bit-4x4.pgm", b"P5 4 4 65535\n" + b"".join(struct.pack(">H", p * 257) for p in img[400:416]))
out("image", "p2-8x4-maxval15.pgm", b"P2\n8 4\n15\n" + b"\n".join(b" ".join(str(p >> 4).encode() for p in img[392 + 28 * k:400 + 28 * k]) for k in range(4)) + b"\n")
