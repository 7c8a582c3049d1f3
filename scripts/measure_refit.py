#!/usr/bin/env python3
"""Measures the refit after early stopping (docs/defaults.md, round 8) on held-out synthetic eras.

For every (shape, seed): `synth` writes the split set (train / validation / test eras) and, for the
synth route, a joined set whose training store holds the split set's training then validation eras
(era g of a seed is generated the same way whatever the split, and the test store is
byte-identical). One model trains on the train eras with early stopping on the validation eras and
is scored on the test eras ("es"); the refit model ("rf") is scored on the same test eras:
  --route synth: `train` on the joined store for the best epoch count, `--patience 0`;
  --route flag:  `train --refit on` (needs a build with the flag; bit-identical, tests/refit.rs).
Extra `train` flags for both runs after `--`. Two jobs at a time, each pinned to one core.

Usage:
  scripts/measure_refit.py --bin target/release/eraengine --work /tmp/refit --seeds 1,2,3 \
      --shapes base,wide [--route synth|flag] [--tag NAME] [-- --pretrain-epochs 8]
"""
import argparse
import concurrent.futures as cf
import json
import os
import re
import statistics
import subprocess
import threading

# train eras, validation eras, test eras, rows per era, features
SHAPES = {
    "base": (120, 20, 20, 1000, 64),
    "wide": (100, 16, 16, 800, 160),
    # a longer history of smaller eras (a third shape, to check that a choice generalises)
    "long": (200, 33, 33, 500, 48),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--shapes", default="base,wide")
    ap.add_argument("--route", choices=["synth", "flag"], default="synth")
    ap.add_argument("--tag", default="recommended")
    ap.add_argument("--epochs", default="15")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    cores, lock = [0, 1], threading.Lock()

    def run(cmd, core=None):
        full = (["taskset", "-c", str(core)] if core is not None else []) + cmd
        p = subprocess.run(full, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(" ".join(cmd) + "\n" + p.stderr[-1500:])
        return p.stdout + p.stderr

    def synth(out, seed, shape, joined):
        e, v, t, r, f = SHAPES[shape]
        eras, valid = (e + v, 0) if joined else (e, v)
        if not os.path.exists(os.path.join(out, "bayes.json")):
            run([a.bin, "synth", "--out", out, "--seed", str(seed), "--quiet", "--eras", str(eras),
                 "--valid-eras", str(valid), "--test-eras", str(t), "--rows", str(r),
                 "--features", str(f)])

    def score(model, data, out, core):
        run([a.bin, "predict", "--model", model, "--data", f"{data}/test.store", "--out", out + ".csv"], core)
        run([a.bin, "eval", "--predictions", out + ".csv", "--data", f"{data}/test.store",
             "--json", out + ".json", "--no-fnc"], core)
        with open(out + ".json") as fh:
            return json.load(fh)["mean"]

    def job(shape, seed):
        d = os.path.join(a.work, f"{shape}-s{seed}")
        synth(d, seed, shape, False)
        o = os.path.join(a.work, "runs", a.tag, f"{shape}-s{seed}")
        os.makedirs(o, exist_ok=True)
        res = os.path.join(o, "res.json")
        if os.path.exists(res):
            with open(res) as fh:
                return json.load(fh)
        common = ["--epochs", a.epochs, "--quiet", "--device", "cpu", "--seed", "1"] + a.extra
        with lock:
            core = cores.pop()
        try:
            tv = ["--data", f"{d}/train.store", "--valid", f"{d}/validation.store"]
            txt = run([a.bin, "train"] + tv + ["--out", f"{o}/es.safetensors", "--refit", "off"] + common, core)
            ep = int(re.search(r"best epoch (\d+)", txt).group(1))
            es = score(f"{o}/es.safetensors", d, f"{o}/es", core)
            if a.route == "synth":
                j = d + "-joined"
                synth(j, seed, shape, True)
                run([a.bin, "train", "--data", f"{j}/train.store", "--out", f"{o}/rf.safetensors",
                     "--patience", "0"] + common + ["--epochs", str(ep)], core)
            else:
                run([a.bin, "train"] + tv + ["--out", f"{o}/rf.safetensors", "--refit", "on"] + common, core)
            rf = score(f"{o}/rf.safetensors", d, f"{o}/rf", core)
        finally:
            with lock:
                cores.append(core)
        with open(os.path.join(d, "bayes.json")) as fh:
            bayes = json.load(fh)["bayes_mean_corr"]["test"]
        r = {"shape": shape, "seed": seed, "epoch": ep, "es": es, "rf": rf, "bayes": bayes}
        with open(res, "w") as fh:
            json.dump(r, fh)
        print(r, flush=True)
        return r

    shapes = a.shapes.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    with cf.ThreadPoolExecutor(2) as ex:
        rs = list(ex.map(lambda t: job(*t), [(s, k) for s in shapes for k in seeds]))
    for shape in shapes:
        x = [r for r in rs if r["shape"] == shape]
        b = statistics.mean(r["bayes"] for r in x)
        for k in ("es", "rf"):
            m = statistics.mean(r[k] for r in x)
            sd = statistics.pstdev([r[k] for r in x])
            print(f"{a.tag} {shape} {k}: {m:+.4f} ({m / b:.0%} of the Bayes limit {b:.4f}), "
                  f"n={len(x)}, std/mean {sd / m:.0%}")
        print(f"{a.tag} {shape} paired rf - es: " + " ".join(f"{r['rf'] - r['es']:+.3f}" for r in x)
              + f"; better on {sum(r['rf'] > r['es'] for r in x)}/{len(x)}")


if __name__ == "__main__":
    main()
