#!/usr/bin/env python3
"""Chooses defaults by measurement, never on one data set.

For every (shape, seed) it writes a realistic synthetic set (`eraengine synth`: train, validation,
test eras and the Bayes-optimal prediction), trains every candidate config on the train eras with
early stopping on the validation eras, predicts the LATER test eras it never saw, scores them with
`eraengine eval`, and reports mean corr and the fraction of the Bayes limit on those test eras.
Jobs run in parallel, one per core, each pinned to its core (so each uses one thread).

Usage:
  scripts/measure_defaults.py --bin target/release/eraengine --work /tmp/measure \
      --seeds 1,2,3,4,5 --shapes base,wide --configs CONFIGS.json --out docs/defaults-table.md
CONFIGS.json: {"name": ["--flag", "value", ...], ...} — extra `train` flags per candidate, or
{"name": {"pretrain": [...], "train": [...]}} to run `eraengine pretrain` on the train store's
features first (with those flags) and start `train --init` from its checkpoint (the pretraining
time counts in the train seconds).
A config named with a "+ensK" suffix (e.g. "+ens3") trains seeds 1..K (`train --seeds`) and predicts
their rank-average ensemble.
"""
import argparse
import concurrent.futures as cf
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

SHAPES = {
    # eras, rows per era, features
    "base": ["--eras", "120", "--rows", "1000", "--features", "64"],
    "wide": ["--eras", "100", "--rows", "800", "--features", "160"],
}

_cores = None
REPORT_ONLY = False
_lock = threading.Lock()


def run(cmd, core):
    full = ["taskset", "-c", str(core)] + cmd if core is not None else cmd
    p = subprocess.run(full, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p


def take_core():
    with _lock:
        return _cores.pop()


def give_core(c):
    with _lock:
        _cores.append(c)


def make_data(bin_, work, shape, seed):
    d = os.path.join(work, f"{shape}-s{seed}")
    if not os.path.exists(os.path.join(d, "bayes.json")):
        run([bin_, "synth", "--out", d, "--seed", str(seed), "--quiet"] + SHAPES[shape], None)
    return d


def bayes_test(d):
    with open(os.path.join(d, "bayes.json")) as f:
        b = json.load(f)
    # the Bayes limit on the test eras (the eras every score below is reported on)
    return b["bayes_mean_corr"]["test"]


def job(bin_, work, shape, seed, name, flags, epochs):
    d = os.path.join(work, f"{shape}-s{seed}")
    out = os.path.join(work, "runs", f"{shape}-s{seed}", name.replace("/", "_"))
    os.makedirs(out, exist_ok=True)
    score_path = os.path.join(out, "scores.json")
    if not os.path.exists(score_path):
        if REPORT_ONLY:
            raise RuntimeError(f"{shape}-s{seed} {name}: not run yet")
        core = take_core()
        try:
            t0 = time.time()
            pre_flags = None
            if isinstance(flags, dict):
                pre_flags = flags.get("pretrain", [])
                flags = flags.get("train", [])
            if pre_flags is not None:
                pre = os.path.join(out, "pretrained.safetensors")
                run([bin_, "pretrain", "--data", f"{d}/train.store", "--out", pre, "--quiet",
                     "--device", "cpu", "--seed", "1"] + pre_flags, core)
                flags = flags + ["--init", pre]
            m = re.search(r"\+ens(\d+)$", name)
            members = int(m.group(1)) if m else 0
            ens = members > 1
            model = os.path.join(out, "ens" if ens else "model.safetensors")
            train = [bin_, "train", "--data", f"{d}/train.store", "--valid", f"{d}/validation.store",
                     "--out", model, "--epochs", str(epochs), "--quiet", "--device", "cpu"] + flags
            seeds = ",".join(str(i) for i in range(1, members + 1))
            train += ["--seeds", seeds] if ens else ["--seed", "1"]
            run(train, core)
            secs = time.time() - t0
            preds = os.path.join(out, "test.csv")
            run([bin_, "predict", "--model", model, "--data", f"{d}/test.store", "--out", preds], core)
            run([bin_, "eval", "--predictions", preds, "--data", f"{d}/test.store", "--json", score_path,
                 "--no-fnc"], core)
            with open(score_path) as f:
                s = json.load(f)
            s["train_seconds"] = secs
            with open(score_path, "w") as f:
                json.dump(s, f)
        finally:
            give_core(core)
    with open(score_path) as f:
        s = json.load(f)
    return shape, seed, name, s["mean"], s.get("train_seconds", float("nan"))


def main():
    global _cores, REPORT_ONLY
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/eraengine")
    ap.add_argument("--work", default="/tmp/eraengine-measure")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--shapes", default="base,wide")
    ap.add_argument("--configs", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--report-only", action="store_true",
                    help="write the table from the runs already finished under --work; train nothing")
    a = ap.parse_args()
    _cores = list(range(a.jobs))
    REPORT_ONLY = a.report_only
    seeds = [int(s) for s in a.seeds.split(",")]
    shapes = a.shapes.split(",")
    with open(a.configs) as f:
        configs = json.load(f)
    os.makedirs(a.work, exist_ok=True)
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        dirs = {(sh, s): ex.submit(make_data, a.bin, a.work, sh, s) for sh in shapes for s in seeds}
        bayes = {k: bayes_test(v.result()) for k, v in dirs.items()}
        futs = [ex.submit(job, a.bin, a.work, sh, s, name, flags, a.epochs)
                for sh in shapes for s in seeds for name, flags in configs.items()]
        results = []
        for fu in cf.as_completed(futs):
            try:
                r = fu.result()
            except Exception as e:  # one failed run is reported, the table goes on
                if not REPORT_ONLY:
                    print(f"FAILED: {e}", file=sys.stderr)
                continue
            results.append(r)
            print(f"{r[0]}-s{r[1]} {r[2]}: test corr {r[3]:+.4f} ({r[3] / bayes[(r[0], r[1])]:.0%} of Bayes), "
                  f"{r[4]:.0f} s", file=sys.stderr)
    lines = ["| config | " + " | ".join(f"{sh} mean corr (% Bayes)" for sh in shapes)
             + " | all: mean % Bayes | seed-to-seed std / mean | train s |",
             "| --- | " + " | ".join("---" for _ in shapes) + " | --- | --- | --- |"]
    for name in configs:
        cells, fracs, secs = [], [], []
        rel_sd = []
        for sh in shapes:
            rs = [r for r in results if r[0] == sh and r[2] == name]
            if not rs:
                cells.append("—")
                continue
            m = statistics.mean(r[3] for r in rs)
            f = [r[3] / bayes[(sh, r[1])] for r in rs]
            fracs += f
            secs += [r[4] for r in rs]
            if len(rs) > 1 and m != 0:
                rel_sd.append(statistics.pstdev(r[3] for r in rs) / abs(m))
            cells.append(f"{m:+.4f} ({statistics.mean(f):.0%}, n={len(rs)})")
        all_f = f"{statistics.mean(fracs):.1%}" if fracs else "—"
        sd = f"{statistics.mean(rel_sd):.0%}" if rel_sd else "—"
        sec = f"{statistics.mean(secs):.0f}" if secs else "—"
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {all_f} | {sd} | {sec} |")
    bl = " / ".join(f"{sh}: {statistics.mean(bayes[(sh, s)] for s in seeds):.4f}" for sh in shapes)
    table = "\n".join(lines) + f"\n\nBayes limit on the test eras (mean over seeds): {bl}\n"
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
