"""Forward + backward steps/s and peak memory of AV-Unified, fused vs naive attention, per task;
and (--lengths) of the backbone alone on long clips, blocked windows vs dense masks.

    python benchmarks/bench_model.py                         # paper settings: batch 64, T 10, 8x8 patches, 768
    python benchmarks/bench_model.py --batch 16 --steps 3    # small CPU run
    python benchmarks/bench_model.py --batch 16 --steps 3 --padded   # the same with padding masks
    python benchmarks/bench_model.py --lengths 40,80,160,320,640,1200,2400 --batch 1 --steps 3

--lengths: embed + TPM + gate (encode without SPM, what a dense head reads) of one batch of
clips of each length, forward + backward of the sum of squares of the features, the model built
for 2,400-step clips (scales 2 ... 64 and scale 0 capped at max_window 128). Three versions:
"banded" (fused SDPA, windows blocked from attention.BANDED_FROM steps on: this code), "dense"
(fused SDPA with every window as a (B, 1, T, T) mask: the code before it) and "naive" (bmm,
softmax, bmm over the full masked matrix: the reference); --naive-max caps the lengths the
naive one runs at (its memory: about 8 GB at 2,400 steps).

CPU runs fp32, CUDA bf16 autocast (override with --dtype). Each task runs in a fresh process
that alternates fused and naive steps (same model, same batch), so load from elsewhere on a
shared machine hits both alike; steps/s = 1 / the median step time; no optimizer step.
Peak memory: on CUDA torch.cuda.max_memory_allocated per step (weights, batch, activations,
grads); on CPU one more process per impl running one step, peak RSS minus the RSS just before
it (activations and grads, not weights or batch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trainer.attention as attention  # noqa: E402
from trainer.attention import attention_impl  # noqa: E402
from trainer.model import AVUnified, ModelConfig  # noqa: E402
from trainer.tasks import HEADS as TASKS  # noqa: E402

VARIANTS = {"ave": "ave", "llp": "llp", "vggss": "vggss", "s4": "avs", "avss": "avs", "avqa": "avqa"}
N_CLASSES = {"ave": 29, "llp": 25, "avss": 71, "avqa": 42}
VOCAB = 400


def make_batch(variant: str, a: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    B, T, M, D, S = a.batch, a.T, a.grid ** 2, a.visual_dim, a.mask_size
    batch = {"audio": torch.randn(B, T, 128), "visual": torch.randn(B, T, D),
             "patches": torch.randn(B, T, M, D), "prompt": torch.randn(B, D)}
    if variant == "ave":
        batch["labels"] = torch.randint(0, 29, (B, T))
    elif variant == "llp":
        del batch["patches"]
        batch["video_labels"] = (torch.rand(B, 25) < 0.1).float()
    elif variant in ("s4", "avss"):
        batch["masks"] = (torch.rand(B, T, S, S) < 0.3).float() if variant == "s4" else torch.randint(0, 71, (B, T, S, S))
        batch["mask_valid"] = torch.ones(B, T, dtype=torch.bool)
    elif variant == "avqa":
        batch["answer"] = torch.randint(0, 42, (B,))
    if a.padded:   # one clip a step short: every attention and gate runs with its padding mask
        batch["length"] = torch.tensor([T - 1] + [T] * (B - 1))
    return {k: v.to(device) for k, v in batch.items()}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def build(a: argparse.Namespace, device: torch.device):
    """Model, batch and a step function for the task a.one."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=a.d_model, n_heads=a.heads, T=a.T, visual_dim=a.visual_dim,
                      n_patches=a.grid ** 2, dropout=0.1)
    model = AVUnified(cfg, {name: task.Head(cfg) for name, task in TASKS.items()}).to(device)
    task = VARIANTS[a.one]
    batch = make_batch(a.one, a, device)
    vocab = torch.randn(VOCAB, a.visual_dim, device=device)
    valid_ids = torch.arange(N_CLASSES[a.one], device=device) if a.one in N_CLASSES else None
    dtype = {"fp32": None, "bf16": torch.bfloat16}[a.dtype]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(batch, task, vocab, valid_ids, **({"mode": "classes"} if a.one == "avss" else {}))
            loss = TASKS[task].loss(out, batch)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def run_one(a: argparse.Namespace) -> dict:
    """Steps of each impl in a.impl, alternating so that load from elsewhere hits both alike."""
    device = torch.device(a.device)
    impls = a.impl.split(",")
    step = build(a, device)
    base = rss_mb()
    for impl in impls:
        with attention_impl(impl):
            for _ in range(a.warmup):
                step()
    times = {impl: [] for impl in impls}
    peak = {impl: 0.0 for impl in impls}
    for _ in range(a.steps):
        for impl in impls:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with attention_impl(impl):
                step()
            times[impl].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peak[impl] = max(peak[impl], torch.cuda.max_memory_allocated() / 2**20)
            else:  # process-wide: meaningful only with one impl per process
                peak[impl] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {impl: {"steps_per_s": 1.0 / statistics.median(times[impl]), "peak_mb": peak[impl]}
            for impl in impls}


def run_length(a: argparse.Namespace) -> dict:
    """One version (a.impl) at one length (a.T): time per forward + backward and peak memory."""
    device = torch.device(a.device)
    if a.impl == "dense":
        attention.BANDED_FROM = 10 ** 9
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=a.d_model, n_heads=a.heads, T=2400, visual_dim=a.visual_dim,
                      n_patches=a.grid ** 2, dropout=0.1)
    model = AVUnified(cfg, {name: task.Head(cfg) for name, task in TASKS.items()}).to(device)
    B, T = a.batch, a.T
    batch = {"audio": torch.randn(B, T, 128, device=device), "visual": torch.randn(B, T, a.visual_dim, device=device),
             "prompt": torch.randn(B, a.visual_dim, device=device),
             "length": torch.tensor([T] + [max(1, 3 * T // 4)] * (B - 1), device=device)}
    batch["length"][0] = T - 1   # one padded step: every sample needs its padding mask
    dtype = {"fp32": None, "bf16": torch.bfloat16}[a.dtype]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            feats = model.encode(batch, spatial=False)
            loss = feats["audio"].float().square().mean() + feats["visual"].float().square().mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
    base = rss_mb()
    times = []
    with attention_impl("naive" if a.impl == "naive" else "fused"):
        for i in range(a.warmup + a.steps):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            step()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)
    return {a.impl: {"s_per_step": statistics.median(times), "peak_mb": peak}}


def lengths_table(a: argparse.Namespace, argv: list[str]) -> None:
    impls = ("banded", "dense", "naive")
    print(f"{'steps':>5} | " + " | ".join(f"{i + ' s/step':>13} | {i + ' peak MB':>14}" for i in impls))
    rows = {}
    for T in (int(x) for x in a.lengths.split(",")):
        res = {}
        for impl in impls:
            if impl == "naive" and T > a.naive_max:
                continue
            res |= child([*argv, "--T", str(T)], "backbone", impl)
        rows[T] = res
        cells = [(f"{res[i]['s_per_step']:13.3f}", f"{res[i]['peak_mb']:14.0f}") if i in res else (f"{'-':>13}", f"{'-':>14}")
                 for i in impls]
        print(f"{T:5d} | " + " | ".join(f"{t} | {m}" for t, m in cells), flush=True)
    Ts = sorted(rows)
    for impl in impls:   # growth exponent of memory between the two longest lengths each ran
        have = [T for T in Ts if impl in rows[T]]
        if len(have) >= 2:
            t0, t1 = have[-2], have[-1]
            m0, m1 = rows[t0][impl]["peak_mb"], rows[t1][impl]["peak_mb"]
            print(f"{impl}: peak memory x{m1 / max(m0, 1e-9):.2f} from {t0} to {t1} steps "
                  f"(exponent {math.log(max(m1, 1e-9) / max(m0, 1e-9)) / math.log(t1 / t0):.2f}; 1 = linear, 2 = quadratic)")


def child(argv: list[str], variant: str, impl: str, *extra: str) -> dict:
    cmd = [sys.executable, __file__, *argv, "--one", variant, "--impl", impl, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        sys.exit(f"{variant}/{impl} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--grid", type=int, default=8, help="patch grid side (M = grid^2)")
    p.add_argument("--visual-dim", type=int, default=768)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mask-size", type=int, default=224)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--tasks", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default; 1 gives steadier ratios on a shared machine)")
    p.add_argument("--padded", action="store_true", help="one clip of each batch a step short (the masked path); "
                   "else every clip fills T and no mask is passed, as for a batch of full-length clips")
    p.add_argument("--lengths", default="", help="comma list of clip lengths in steps: the backbone table instead")
    p.add_argument("--naive-max", type=int, default=1200, help="--lengths: longest length the naive version runs")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="fused,naive", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.dtype == "auto":
        a.dtype = "bf16" if a.device.startswith("cuda") else "fp32"
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(run_length(a) if a.one == "backbone" else run_one(a)))
        return

    name = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    mem = "peak MB" if a.device.startswith("cuda") else "peak MB over RSS"
    opts = {k: v for k, v in vars(a).items() if k not in ("one", "impl", "tasks") and not (a.lengths and k == "T")}
    argv = [x for k, v in opts.items() if v is not False
            for x in (("--" + k.replace("_", "-"),) if v is True else ("--" + k.replace("_", "-"), str(v)))]
    if a.lengths:
        print(f"device: {name}, torch {torch.__version__}, {a.dtype}; backbone (embed, TPM, gate), batch {a.batch}, "
              f"visual dim {a.visual_dim}, d_model {a.d_model}, {a.heads} heads, {a.steps} timed steps after "
              f"{a.warmup} warmup; {mem}: {'torch.cuda.max_memory_allocated' if a.device.startswith('cuda') else 'ru_maxrss of a process per cell minus its RSS before the first step (activations, grads, masks)'}")
        lengths_table(a, argv)
        return
    print(f"device: {name}, torch {torch.__version__}, {a.dtype}; batch {a.batch}, T {a.T}, "
          f"{a.grid}x{a.grid} patches, visual dim {a.visual_dim}, d_model {a.d_model}, {a.heads} heads, "
          f"masks {a.mask_size}, {a.steps} timed steps after {a.warmup} warmup, "
          f"{'one clip a step short (padding masks)' if a.padded else 'full clips (no mask)'}")
    print(f"{'task':6} | {'fused it/s':>10} | {'naive it/s':>10} | {'speed f/n':>9} | "
          f"{'fused ' + mem:>22} | {'naive ' + mem:>22} | {'mem f/n':>7}")
    for variant in a.tasks.split(","):
        res = child(argv, variant, "fused,naive")  # timing (and CUDA memory), interleaved
        if a.device == "cpu":  # peak RSS needs a process per impl: one step each
            for impl in ("fused", "naive"):
                res[impl]["peak_mb"] = child(argv, variant, impl, "--steps", "1", "--warmup", "0")[impl]["peak_mb"]
        f, n = res["fused"], res["naive"]
        print(f"{variant:6} | {f['steps_per_s']:10.3f} | {n['steps_per_s']:10.3f} | "
              f"{f['steps_per_s'] / n['steps_per_s']:9.2f} | {f['peak_mb']:22.0f} | {n['peak_mb']:22.0f} | "
              f"{f['peak_mb'] / max(n['peak_mb'], 1e-9):7.2f}", flush=True)


if __name__ == "__main__":
    main()
