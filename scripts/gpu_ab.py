#!/usr/bin/env python3
"""Old against new on one GPU: the training step of two eraengine binaries, alternated.

    scripts/gpu_ab.py OLD NEW [--shape "ARGS"]... [--rounds 3] [--reps 30] [--profile] [--device emu]

OLD and NEW are eraengine binaries (e.g. unpacked from two scripts/gpu_bundle.sh bundles with
`tar -xJf BUNDLE -C DIR`). Each round runs `bench --device cuda --json --reps REPS SHAPE` with
OLD, then NEW, for every shape, and prints each side's step_ms and the median ratio. With
--profile, one more run per side with ERAENGINE_CUDA_PROFILE=1 prints the kernels' measured
device time, kernel by kernel, old next to new. The machine's other load moves both sides alike,
which is why they alternate (docs/gpu.md).
"""
import argparse
import json
import os
import statistics
import subprocess

DEFAULT_SHAPES = [
    "--features 705",
    "--features 2376 --d-model 128 --heads 8",
    "--rows 6000 --features 2376 --d-model 256 --heads 8",
]


def bench(binary, device, shape, reps, profile=False):
    env = dict(os.environ, ERAENGINE_CUDA_PROFILE="1") if profile else None
    cmd = [binary, "bench", "--device", device, "--json", "--reps", str(reps)] + shape.split()
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", help="the baseline eraengine binary")
    p.add_argument("new", help="the eraengine binary under test")
    p.add_argument("--shape", action="append", help="bench shape flags, repeatable (default: the "
                   "three Numerai shapes of docs/gpu.md)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: %(default)s)")
    p.add_argument("--reps", type=int, default=30, help="timed steps per run (default: %(default)s)")
    p.add_argument("--device", default="cuda", choices=["cuda", "emu"],
                   help="emu: a dry check of this script on a machine without a GPU (default: %(default)s)")
    p.add_argument("--profile", action="store_true", help="also compare per-kernel device times "
                   "(default: off)")
    a = p.parse_args()
    for shape in a.shape or DEFAULT_SHAPES:
        steps = {"old": [], "new": []}
        for _ in range(a.rounds):
            for side in ("old", "new"):
                steps[side].append(bench(getattr(a, side), a.device, shape, a.reps)["step_ms"])
        o, n = statistics.median(steps["old"]), statistics.median(steps["new"])
        rounds = " ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(steps["old"], steps["new"]))
        print(f"{shape}: step old/new by round {rounds} ms; median {o:.2f} -> {n:.2f} ms "
              f"({o / n:.2f}x)", flush=True)
        if a.profile:
            prof = {side: bench(getattr(a, side), a.device, shape, a.reps, True) for side in ("old", "new")}
            us = {side: {k["name"]: k.get("measured_us", 0.0) for k in prof[side]["kernels"]}
                  for side in prof}
            ms = {side: prof[side].get("measured_kernels_ms", 0.0) for side in prof}
            print(f"  kernels {ms['old']:.3f} -> {ms['new']:.3f} ms per step (measured only on cuda)")
            names = sorted(set(us["old"]) | set(us["new"]), key=lambda k: -max(us["old"].get(k, 0),
                                                                             us["new"].get(k, 0)))
            for k in names[:12]:
                print(f"    {k:40s} {us['old'].get(k, 0):9.1f} -> {us['new'].get(k, 0):9.1f} us")


if __name__ == "__main__":
    main()
