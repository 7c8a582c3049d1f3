"""Compares eraengine_torch with `eraengine predict --raw` on the same rows (scripts/check_torch_twin.sh).

usage: python check_twin.py NAME CKPT|ENSEMBLE_DIR TOL PARQUET=RAW_CSV [PARQUET=RAW_CSV ...]

For every pair: reads the parquet that `eraengine synth --parquet` wrote (the rows of the store that
gave RAW_CSV), predicts every era with the PyTorch module in float32 and in float64, matches rows by
id and prints the max |difference| against eraengine's raw output 0. Exits 1 when a difference
exceeds TOL, when ids do not match, or when the ranked predictions are not strictly inside (0, 1)."""
import os
import sys

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eraengine_torch as et  # noqa: E402


def frame(path):
    df = pd.read_parquet(path)
    if "id" in df.columns:
        df = df.set_index("id")
    return df


def main():
    name, ckpt, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pairs = [a.split("=", 1) for a in sys.argv[4:]]
    torch.set_num_threads(1)
    # a directory is an ensemble (`train --seeds`), compared with `predict --raw --model DIR`
    loader = et.Ensemble.from_dir if os.path.isdir(ckpt) else et.load
    models = {"f32": loader(ckpt, torch.float32), "f64": loader(ckpt, torch.float64)}
    worst = {k: 0.0 for k in models}
    rows = 0
    ok = True
    for pq_path, csv_path in pairs:
        df = frame(pq_path)
        ref = pd.read_csv(csv_path, dtype={"id": str}).set_index("id")["prediction"]
        if len(ref) != len(df) or set(ref.index) != set(df.index):
            print(f"FAIL {name}: ids of {csv_path} ({len(ref)}) differ from {pq_path} ({len(df)})")
            return 1
        rows += len(df)
        for k, m in models.items():
            got = m.predict_eras(df, era_col="era", raw=True)
            diff = np.abs(got.to_numpy() - ref.loc[df.index].to_numpy())
            worst[k] = max(worst[k], float(np.max(diff)) if len(diff) else 0.0)
        ranked = models["f32"].predict_eras(df, era_col="era")
        if not ((ranked > 0) & (ranked < 1)).all():
            print(f"FAIL {name}: ranked predictions outside (0, 1)")
            ok = False
    verdict = "ok" if ok and max(worst.values()) <= tol else "FAIL"
    print(f"{verdict:4} {name:14} {rows} rows  max|torch - eraengine| float32 {worst['f32']:.2e}  "
          f"float64 {worst['f64']:.2e}  (tolerance {tol:g})")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
