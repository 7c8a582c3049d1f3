"""numpy (OpenBLAS) sgemm at the shapes and forms of benches/gemm.rs, one and two threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benches/gemm_numpy.py

Installs numpy (and threadpoolctl, to pin and report the BLAS thread count) into target/venv-numpy
if this interpreter lacks them, then re-runs itself there. Best of repeated runs, like the Rust bench.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "venv-numpy")

try:
    import numpy as np
except ImportError:
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "numpy", "threadpoolctl"])
    os.execv(py, [py] + sys.argv)

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

# (label, m, k, n, ta, tb): as in benches/gemm.rs
SHAPES = [
    ("4096^3 A·B", 4096, 4096, 4096, False, False),
    ("fwd 5000x42x64", 5000, 42, 64, False, True),
    ("fwd 5000x705x64", 5000, 705, 64, False, True),
    ("fwd 5000x64x64", 5000, 64, 64, False, True),
    ("dW 64x5000x64", 64, 5000, 64, True, False),
    ("fwd 5000x2376x128", 5000, 2376, 128, False, True),
    ("fwd 5000x128x128", 5000, 128, 128, False, True),
    ("dW 128x5000x128", 128, 5000, 128, True, False),
    ("dX 5000x128x128", 5000, 128, 128, False, False),
    ("fwd 5000x128x256", 5000, 128, 256, False, True),
]


def best_time(f):
    """(best wall seconds, CPU seconds of this thread per run): the second is robust to load."""
    best, spent, reps = float("inf"), 0.0, 0
    cpu0 = time.thread_time()
    while reps < 3 or (spent < 0.3 and reps < 1000):
        t = time.perf_counter()
        f()
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best, (time.thread_time() - cpu0) / reps


def main():
    big = os.environ.get("ERAENGINE_BENCH_GEMM_BIG", "1") != "0"
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"# warning: {var}={os.environ[var]} is set (run under env -u {var})")
    print(f"# numpy {np.__version__}")
    if threadpool_info is None:
        print("# threadpoolctl not available: thread counts not pinned")
    else:
        for info in threadpool_info():
            print(f"# {info.get('internal_api')} {info.get('version')} "
                  f"arch {info.get('architecture')} threads {info.get('num_threads')}")
    rng = np.random.default_rng(0)
    print(f"{'shape (m x k x n)':<20} {'path':<9} {'1t ms':>9} {'1t GF/s':>9} {'1t cpu GF/s':>11} "
          f"{'2t ms':>9} {'2t GF/s':>9}")
    for label, m, k, n, ta, tb in SHAPES:
        if m == 4096 and not big:
            continue
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        a_op = a.T if ta else a
        b_op = b.T if tb else b
        out = np.empty((m, n), dtype=np.float32)
        flops = 2.0 * m * n * k
        cells = []
        for threads in (1, 2):
            if threadpool_limits is not None:
                with threadpool_limits(limits=threads, user_api="blas"):
                    t, cpu = best_time(lambda: np.matmul(a_op, b_op, out=out))
            else:
                t, cpu = best_time(lambda: np.matmul(a_op, b_op, out=out))
            cells.append((t * 1e3, flops / t / 1e9, flops / cpu / 1e9))
        print(f"{label:<20} {'openblas':<9} {cells[0][0]:>9.3f} {cells[0][1]:>9.1f} {cells[0][2]:>11.1f} "
              f"{cells[1][0]:>9.3f} {cells[1][1]:>9.1f}")


if __name__ == "__main__":
    main()
