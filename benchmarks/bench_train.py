"""Training throughput: full steps of joint training over all tasks, fused vs naive attention,
and the loader alone (it must be several times the training rate).

    python benchmarks/bench_train.py                                   # CPU: paper model, batch 8
    python benchmarks/bench_train.py --device cuda --batch 64          # GPU, bf16 autocast
    python benchmarks/bench_train.py --stores 'features/{task}.zarr'   # real stores instead

A "full step" is what trainer/train.py does each step: batch to the device, forward and loss
under autocast, zero_grad, backward, clip, Adam step, lr step; the task drawn at random
(uniform, seeded) and the batch read by the same loader (workers, pinned memory on CUDA). By
default the stores are generated: random features in the paper's shapes (CLIP width 768, 8 x 8
patches, T = 10 / 5 / 60, masks 224) with the adapters' targets. Each configuration runs in its
own process; after a warm-up of `--warmup` steps it times `--steps` steps (CUDA synchronised).
samples/s = samples / wall time of the timed steps; per task, batch / median step time.
Peak memory: CUDA max_memory_allocated; CPU the process's peak RSS (weights, optimiser, batches,
activations; the loader processes not included). The loader alone iterates the same loader
with no model. The machine and the device are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.attention import set_attention_impl  # noqa: E402
from trainer.data import BatchDataset, TaskSampler, make_loader, open_tasks, to_device  # noqa: E402
from trainer.runtime import autocast, build_model, task_tensors  # noqa: E402
from trainer.model import ModelConfig  # noqa: E402
from trainer.tasks import BENCHMARKS, HEADS as TASKS  # noqa: E402

PAPER_T = {"avs-s4": 5, "avs-ms3": 5, "music-avqa": 60}


def make_fake_stores(root: Path, clips: int, dim: int, grid: int, mask: int) -> str:
    from tests.fake_stores import make_stores

    return make_stores(root, tuple(BENCHMARKS), clips, D=dim, G=grid, S=mask, T_of=PAPER_T)


def setup(a: argparse.Namespace, device: torch.device):
    stores = open_tasks(list(BENCHMARKS) if a.tasks == "all" else a.tasks.split(","), a.stores)
    s = next(iter(stores.values()))
    sampler = TaskSampler({t: x.n("train") for t, x in stores.items()}, a.batch, dict.fromkeys(stores, 1.0), 0)
    mcfg = ModelConfig(d_model=a.d_model, n_heads=a.heads, d_ff=a.d_model, visual_dim=s.visual_dim,
                       n_patches=s.n_patches)
    data = BatchDataset(stores, {h: TASKS[h].Head.uses_patches for h in TASKS})
    loader = make_loader(data, sampler, a.workers, 4, pin=device.type == "cuda", persistent=True)
    return stores, mcfg, loader


def child_train(a: argparse.Namespace) -> dict:
    device = torch.device(a.device)
    set_attention_impl(a.impl)
    torch.manual_seed(0)
    stores, mcfg, loader = setup(a, device)
    model = build_model(mcfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1000, 0.1)
    tensors = {t: task_tensors(s, device) for t, s in stores.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {}
    samples, start = 0, None
    it = iter(loader)
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            sync()
            start = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
        batch = next(it)
        task = batch.pop("task")
        batch.pop("state")
        t0 = time.perf_counter()
        batch = to_device(batch, device)
        spec = stores[task].spec
        with autocast(device, a.precision):
            loss = spec.loss()(model(batch, spec.head, *tensors[task], **spec.head_options), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        sync()
        if step >= a.warmup:
            times.setdefault(task, []).append(time.perf_counter() - t0)
            samples += len(batch["clip_index"])
    wall = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"impl": a.impl, "samples_per_s": samples / wall, "steps": a.steps, "peak_mb": peak,
            "per_task_samples_per_s": {t: a.batch / statistics.median(v) for t, v in times.items()},
            "per_task_steps": {t: len(v) for t, v in times.items()}}


def child_loader(a: argparse.Namespace) -> dict:
    _, _, loader = setup(a, torch.device(a.device))
    it = iter(loader)
    for _ in range(a.warmup):
        next(it)
    samples, t0 = 0, time.perf_counter()
    for _ in range(a.loader_steps):
        samples += len(next(it)["clip_index"])
    return {"impl": "loader only", "samples_per_s": samples / (time.perf_counter() - t0), "steps": a.loader_steps}


def run_child(kind: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *argv], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto", help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 200 CUDA, 28 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="default 20 CUDA, 7 CPU")
    p.add_argument("--loader-steps", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="loader processes (default 8 CUDA, 2 CPU)")
    p.add_argument("--tasks", default="all")
    p.add_argument("--stores", default=None, help="store template with {task}; default: generated")
    p.add_argument("--clips", type=int, default=None, help="generated clips per task (default 4 x batch)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--mask", type=int, default=224)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--impl", default="fused")
    p.add_argument("--child", default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    a.batch = a.batch or (64 if cuda else 8)
    a.steps = a.steps or (200 if cuda else 28)
    a.warmup = a.warmup if a.warmup is not None else (20 if cuda else 7)
    a.loader_steps = a.loader_steps or 4 * a.steps
    a.workers = a.workers if a.workers is not None else (8 if cuda else 2)
    if a.child:
        torch.set_num_threads(torch.get_num_threads())
        print(json.dumps(child_train(a) if a.child == "train" else child_loader(a)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if a.stores is None:
            a.stores = make_fake_stores(Path(tmp), a.clips or 4 * a.batch, a.dim, a.grid, a.mask)
        argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("child", "out", "impl")
                and v is not None]
        results = [run_child("train", [*argv, f"--impl={impl}"]) for impl in ("fused", "naive")]
        results.append(run_child("loader", argv))
    device = torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}, " \
                                                           f"{os.cpu_count()} cores, {torch.get_num_threads()} threads"
    meta = {"device": device, "torch": torch.__version__, "batch": a.batch, "precision":
            ("bf16" if cuda else "fp32") if a.precision == "auto" else a.precision, "workers": a.workers,
            "d_model": a.d_model, "dim": a.dim, "grid": a.grid, "mask": a.mask, "stores": a.stores}
    print(json.dumps({"meta": meta, "results": results}, indent=1))
    fused, naive, loader = results
    print(f"\n{device}, batch {a.batch}, {meta['precision']}, {a.workers} loader workers")
    print("| configuration | samples/s | peak memory (MB) |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['impl']} | {r['samples_per_s']:.1f} | {r.get('peak_mb', float('nan')):.0f} |")
    print(f"fused / naive: {fused['samples_per_s'] / naive['samples_per_s']:.2f}x; "
          f"loader / fused training: {loader['samples_per_s'] / fused['samples_per_s']:.1f}x")
    tasks = sorted(fused["per_task_samples_per_s"])
    print("| task | " + " | ".join(tasks) + " |\n|---|" + "---:|" * len(tasks))
    for r in (fused, naive):
        print(f"| {r['impl']} samples/s | " + " | ".join(f"{r['per_task_samples_per_s'].get(t, 0):.1f}"
                                                          for t in tasks) + " |")
    if a.out:
        a.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
