#!/usr/bin/env python3
"""One training step of the same model in PyTorch (eager, or torch.compile with --compile) and in `eraengine bench`, alternating, on the CPU or (--device cuda) on the GPU.

The model mirrors src/model (SPEC §3): era-dependent sigmoid feature gate (rank 8) with its L1
(mean gate) term, mapper (two linear maps), L layers of [linear or softmax attention over the era's
rows, add, layer norm, dropout, FFN with GELU, add, layer norm, dropout], head (linear, GELU, linear);
loss MSE + 1e-3 · sparsity; global-norm clipping at 1.0; Adam. One step = forward + loss + backward
+ clip + Adam on one era of ROWS rows.

Both sides use THREADS threads (default 2). Rounds alternate: eraengine bench (a subprocess, its
median step_ms), then the PyTorch step timed in this process (median of REPS steps). The table
prints both medians over the rounds and the ratio PyTorch / eraengine (> 1: eraengine faster).
With --device cuda both run on the GPU; the PyTorch step is timed from a synchronize to a
synchronize, with the era already on the device (eraengine's step includes the era's upload).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time


def build_model(torch, f, d, heads, layers, attention, dropout, rank=8):
    nn = torch.nn
    F = torch.nn.functional

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ffn0, self.ffn1 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

        def attn(self, x, mask):
            n = x.shape[0]
            dh = d // heads
            q = self.q(x).view(n, heads, dh).transpose(0, 1)
            k = self.k(x).view(n, heads, dh).transpose(0, 1)
            v = self.v(x).view(n, heads, dh).transpose(0, 1)
            if attention == "linear":
                pq, pk = F.elu(q) + 1, (F.elu(k) + 1) * mask.view(1, n, 1)
                s = pk.transpose(1, 2) @ v  # [h, dh, dh]
                z = pk.sum(1)  # [h, dh]
                num = pq @ s
                den = (pq * z.unsqueeze(1)).sum(-1, keepdim=True) + 1e-6
                o = num / den
            else:
                keep = mask.view(1, 1, n) != 0
                o = F.scaled_dot_product_attention(
                    q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=keep.unsqueeze(0)
                ).squeeze(0)
            return self.o(o.transpose(0, 1).reshape(n, d))

        def forward(self, x, mask):
            h1 = F.dropout(self.norm1(x + self.attn(x, mask)), dropout, self.training)
            f = self.ffn1(F.gelu(self.ffn0(h1)))
            return F.dropout(self.norm2(h1 + f), dropout, self.training)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_w = nn.Parameter(torch.zeros(f))
            self.gate_a = nn.Parameter(torch.randn(f, rank) * 0.01)
            self.gate_b = nn.Parameter(torch.randn(f, rank) * 0.01)
            self.mapper0, self.mapper1 = nn.Linear(f, d), nn.Linear(d, d)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.head0, self.head1 = nn.Linear(d, d), nn.Linear(d, 1)

        def forward(self, x, mask):
            xbar = (x * mask.unsqueeze(1)).sum(0) / mask.sum().clamp(min=1)
            g = torch.sigmoid(self.gate_w + self.gate_b @ (self.gate_a.t() @ xbar))
            h = self.mapper1(self.mapper0(x * g))
            for ly in self.layers:
                h = ly(h, mask)
            return self.head1(F.gelu(self.head0(h))), g

    return Model()


def torch_step_ms(torch, args, reps):
    torch.manual_seed(0)
    n, f = args.rows, args.features
    model = build_model(torch, f, args.d_model, args.heads, args.layers, args.attention, args.dropout)
    dev = torch.device(args.device)
    model.to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # --compile: forward and backward through TorchInductor (compiled on the warm-up step, untimed)
    fwd = torch.compile(model) if args.compile else model
    x = ((torch.randint(0, 5, (n, f)).float() - 2) / 2).to(dev)
    y = (torch.randint(0, 5, (n, 1)).float() / 4).to(dev)
    mask = torch.ones(n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        yhat, g = fwd(x, mask)
        loss = ((yhat - y) ** 2 * mask.unsqueeze(1)).sum() / mask.sum() + 1e-3 * g.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    sync()
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(times), statistics.median(cpu)


def era_step_ms(args, reps):
    cmd = [
        args.eraengine, "bench", "--json", "--device", args.device, "--reps", str(reps),
        "--rows", str(args.rows), "--features", str(args.features),
        "--d-model", str(args.d_model), "--heads", str(args.heads),
        "--layers", str(args.layers), "--attention", args.attention,
        "--dropout", str(args.dropout),
    ]
    # eraengine uses every core the process may run on (2 here); taskset narrows it
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    if v.get("threads") not in (None, args.threads):
        print(f"note: eraengine used {v['threads']} threads", file=sys.stderr)
    return v["step_ms"], v.get("step_cpu_ms") or math.nan


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eraengine", default="target/release/eraengine", help="binary (default: %(default)s)")
    p.add_argument("--rows", type=int, default=5000, help="rows per era (default: %(default)s)")
    p.add_argument("--features", type=int, default=42, help="features (default: %(default)s)")
    p.add_argument("--d-model", type=int, default=64, help="model width (default: %(default)s)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default: %(default)s)")
    p.add_argument("--layers", type=int, default=2, help="layers (default: %(default)s)")
    p.add_argument("--attention", default="linear", choices=["linear", "softmax"], help="(default: %(default)s)")
    p.add_argument("--dropout", type=float, default=0.1, help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="threads on both sides (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: %(default)s)")
    p.add_argument("--reps", type=int, default=10, help="timed steps per round and side (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where both sides run (default: %(default)s)")
    p.add_argument("--compile", action="store_true",
                   help="run the PyTorch model through torch.compile (TorchInductor; needs a C++ compiler) "
                        "instead of eager (default: eager)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    era, era_cpu, pt, pt_cpu = [], [], [], []
    for r in range(args.rounds):
        e, ec = era_step_ms(args, args.reps)
        t, tc = torch_step_ms(torch, args, args.reps)
        era.append(e), era_cpu.append(ec), pt.append(t), pt_cpu.append(tc)
        print(f"round {r + 1}: eraengine {e:8.2f} ms (cpu {ec:7.1f})   pytorch {t:8.2f} ms (cpu {tc:7.1f})")
    e, t = statistics.median(era), statistics.median(pt)
    ec, tc = statistics.median(era_cpu), statistics.median(pt_cpu)
    print(
        f"rows {args.rows} features {args.features} d {args.d_model} heads {args.heads} layers {args.layers} "
        f"{args.attention}, {args.device}, {args.threads} threads, torch {torch.__version__}"
        f"{' (torch.compile)' if args.compile else ' (eager)'}"
    )
    print(f"wall: eraengine {e:.2f} ms  pytorch {t:.2f} ms  ratio (pytorch/eraengine) {t / e:.2f}x")
    print(f"cpu:  eraengine {ec:.1f} ms  pytorch {tc:.1f} ms  ratio (pytorch/eraengine) {tc / ec:.2f}x")


if __name__ == "__main__":
    main()
