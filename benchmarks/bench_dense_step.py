"""A dense training step (the whole model: embed + TPM + gate + the dense head, focal + DIoU
loss, backward; no optimizer step) on long clips: time and peak memory against clip length.

    python benchmarks/bench_dense_step.py                          # the issue's three cases
    python benchmarks/bench_dense_step.py --cases 8x60,8x240,1x2400 --steps 2 --threads 2

A case BxL is a batch of B clips of L steps (8x60: 60 s clips at 1 s steps; 8x240: the same
clips at 0.25 s; 1x2400: one 10-minute clip at 0.25 s). The clips come from a fake UnAV-100 store
(tests/fake_stores.py: 100 classes, planted events, ViT-L-14 widths: visual 768, no patches as the
dense stores are made), the model is the paper's width (d_model 512, 4 heads, d_ff 512) built for
the case's length (scales and max_window as training builds them). Each case runs in a fresh
process: step time = the median of --steps timed steps after one warm-up; peak = ru_maxrss after
the steps minus the RSS before the first step (activations and gradients, not weights or batch).
The last column divides each case's peak by its steps x batch, so linear growth shows as a flat
column.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(case: str, steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    from pipeline.datasets import unav100
    from tests.fake_stores import make_dense_store
    from trainer.data import BatchDataset, open_task, to_device
    from trainer.model import ModelConfig
    from trainer.runtime import build_model, task_tensors
    from trainer.tasks import BENCHMARKS

    if threads:
        torch.set_num_threads(threads)
    B, L = map(int, case.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        path = make_dense_store(Path(tmp), "unav100", n=B, steps=(L, L), classes=list(unav100.CLASSES), D=768,
                                G=8, patches=False, audio_only=0.0, time_chunk=40,
                                splits={"train": list(range(B))})
        ts = open_task("unav100", path)
        raw = BatchDataset({"unav100": ts}, {"dense": False})[
            {"task": "unav100", "split": "train", "indices": np.arange(B)}]
        batch = to_device(torch.utils.data.default_convert(raw), torch.device("cpu"))
        tensors = task_tensors(ts, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=512, n_heads=4, d_ff=512, visual_dim=768, n_patches=64, T=L,
                                    task_T={"unav100": L}))
    loss_of = BENCHMARKS["unav100"].loss("full")
    head = BENCHMARKS["unav100"].head

    def step() -> float:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = loss_of(model(batch, head, *tensors), batch)
        loss.backward()
        return time.perf_counter() - t0

    before = rss_mb()
    step()                                            # warm-up
    times = [step() for _ in range(steps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"case": case, "B": B, "L": L, "step_s": statistics.median(times), "peak_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="8x60,8x240,1x2400")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.steps, a.threads)))
        return
    rows = []
    for case in a.cases.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", case, "--steps", str(a.steps),
                              "--threads", str(a.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['case']:>8}  {r['B'] * r['L']:>6} steps  {r['step_s']:7.2f} s/step  peak +{r['peak_mb']:7.0f} MB"
              f"  {1024 * r['peak_mb'] / (r['B'] * r['L']):6.1f} kB per clip-step", flush=True)


if __name__ == "__main__":
    main()
