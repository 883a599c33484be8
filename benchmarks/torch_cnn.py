#!/usr/bin/env python3
"""benchmarks/torch_cnn.py -- the tutorial CNN in PyTorch on the CPU: the
baseline benchmarks/run.sh compares libtensor with. Same network, data (read
from the same IDX files, pixel / 255 as float32), batch, thread count, warm-up
and number of steps as benchmarks/train_libtensor.c; prints one RESULT line.

    torch_cnn.py [--batch N] [--steps N|0] [--warmup N] [--threads N]
                 [--data DIR] [--seed S] [--no-infer] [--ftz]

Adam has Keras's hyper-parameters (lr 1e-3, betas 0.9/0.999, eps 1e-7); PyTorch
places eps after the bias correction where Keras folds it in first, which does
not change the cost. Which BLAS torch calls is printed (its build config and the
library actually mapped into the process)."""
import argparse
import gzip
import os
import resource
import struct
import sys
import time


def read_idx(path_base, magic):
    """The payload of an IDX file, plain or .gz (the .gz tried first)."""
    for path, opener in ((path_base + ".gz", gzip.open), (path_base, open)):
        if os.path.exists(path):
            with opener(path, "rb") as f:
                data = f.read()
            break
    else:
        sys.exit("torch_cnn.py: cannot find %s(.gz)" % path_base)
    m, n = struct.unpack(">II", data[:8])
    if m != magic:
        sys.exit("torch_cnn.py: %s: bad magic 0x%x" % (path, m))
    header = 16 if magic == 0x803 else 8
    return n, data[header:]


def load(torch, d, images, labels):
    n, px = read_idx(os.path.join(d, images), 0x803)
    m, lb = read_idx(os.path.join(d, labels), 0x801)
    if n != m or len(px) != n * 784 or len(lb) != n:
        sys.exit("torch_cnn.py: %s: sizes do not agree" % images)
    x = torch.frombuffer(bytearray(px), dtype=torch.uint8).reshape(n, 1, 28, 28)
    x = x.to(torch.float32).div_(255.0)
    y = torch.frombuffer(bytearray(lb), dtype=torch.uint8).to(torch.int64)
    return x, y


def blas_in_use():
    """The BLAS/LAPACK libraries mapped into this process, links resolved."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                base = os.path.basename(fields[-1]) if len(fields) >= 6 else ""
                if any(k in base for k in ("blas", "lapack", "mkl_")):
                    found.add(os.path.realpath(fields[-1]))
    except OSError:
        pass
    return sorted(found)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("TG_FASHION_MNIST_DIR")
                    or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-infer", action="store_true")
    ap.add_argument("--ftz", action="store_true",
                    help="torch.set_flush_denormal(True): denormals flushed to zero")
    a = ap.parse_args()
    if a.threads > 0:
        # OpenBLAS (pthread build) and OpenMP read these when they start
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[k] = str(a.threads)

    import torch
    from torch import nn

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.ftz:
        torch.set_flush_denormal(True)

    cfg = torch.__config__.show()
    blas_cfg = [f.strip() for f in cfg.replace(",", "\n").split("\n") if "BLAS_INFO" in f]
    blas_cfg = blas_cfg[0].split()[-1] if blas_cfg else "BLAS_INFO=?"
    libs = [p for p in blas_in_use() if "blas" in os.path.basename(p)]
    print("torch %s; build %s, loaded %s; oneDNN (mkldnn) %s" % (
        torch.__version__, blas_cfg, ", ".join(libs) or "no BLAS library",
        "on" if torch.backends.mkldnn.is_available() else "off"))

    xtr, ytr = load(torch, a.data, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    if not a.no_infer:
        xte, yte = load(torch, a.data, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    t_setup = time.perf_counter()
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(5408, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # Keras's initializers
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    b = a.batch
    per_epoch = xtr.shape[0] // b  # full batches only
    epoch_mode = a.steps == 0
    steps = per_epoch if epoch_mode else a.steps
    t_setup = time.perf_counter() - t_setup

    model.train()
    pos = per_epoch
    perm = None
    times = []
    loss_sum = 0.0
    t_train = 0.0
    for s in range(a.warmup + steps):
        if s == a.warmup:
            t_train = time.perf_counter()
        t0 = time.perf_counter()
        if pos >= per_epoch:
            perm = torch.randperm(xtr.shape[0])
            pos = 0
        idx = perm[pos * b:(pos + 1) * b]
        pos += 1
        xb, yb = xtr[idx], ytr[idx]
        opt.zero_grad(set_to_none=False)
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        lv = loss.item()
        if s >= a.warmup:
            loss_sum += lv
            times.append(time.perf_counter() - t0)
    t_train = time.perf_counter() - t_train

    t_inf, acc, test_loss = 0.0, -1.0, 0.0
    if not a.no_infer:
        model.eval()
        correct = 0
        t_inf = time.perf_counter()
        with torch.no_grad():
            for i in range(0, xte.shape[0], b):
                xb, yb = xte[i:i + b], yte[i:i + b]
                z = model(xb)
                test_loss += lossf(z, yb).item() * xb.shape[0]
                correct += (z.argmax(1) == yb).sum().item()
        t_inf = time.perf_counter() - t_inf
        acc = correct / xte.shape[0]
        test_loss /= xte.shape[0]

    times.sort()
    ms_step = t_train / steps * 1e3 if steps else 0.0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT impl=%s batch=%d threads=%d steps=%d epoch_mode=%d train_s=%.4f "
          "ms_step=%.4f ms_step_median=%.4f img_s=%.1f epoch_s=%.3f train_loss=%.4f "
          "infer_s=%.4f infer_img_s=%.1f test_acc=%.4f test_loss=%.4f rss_mb=%.1f setup_s=%.3f"
          % ("torch_ftz" if a.ftz else "torch", b, torch.get_num_threads(), steps, epoch_mode, t_train, ms_step,
             times[len(times) // 2] * 1e3 if times else 0.0,
             steps * b / t_train if steps else 0.0, ms_step * 1e-3 * 60000.0 / b,
             loss_sum / steps if steps else 0.0, t_inf,
             (xte.shape[0] / t_inf) if not a.no_infer else 0.0, acc, test_loss, rss_mb,
             t_setup))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
