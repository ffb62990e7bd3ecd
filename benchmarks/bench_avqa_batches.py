"""MUSIC-AVQA training steps: questions drawn in any mix against runs of N questions of one video.

    python benchmarks/bench_avqa_batches.py --store demo/features/music-avqa.zarr   # after `avu demo`
    python benchmarks/bench_avqa_batches.py --run 8 --steps 40                     # generated store

With `questions_per_video: N` (stages.yaml, train) a batch holds runs of up to N questions of
one video and the model runs TPM + SPM once per video (trainer/model.py). Both settings here
time the same full steps (batch to the device, forward, loss, backward, clip, Adam) of the same
model with the same seed; only the sampler differs. Batches are read in-process beforehand, so
the numbers are the model's. Printed: ms a step (median), distinct videos a batch, and the
ratio. Without --store, a store of random features (T = 60, 4 x 4 patches, 20 questions a video)
is generated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.data import BatchDataset, TaskSampler, feature_stats, open_task, to_device  # noqa: E402
from trainer.runtime import build_model, task_tensors  # noqa: E402
from trainer.model import ModelConfig  # noqa: E402
from trainer.tasks import HEADS as TASKS  # noqa: E402


def generated_store(root: Path, videos: int, per_video: int) -> Path:
    from tests import fake_stores

    fake_stores.make_store(root, "music-avqa", videos, D=64, G=4, T_of={"music-avqa": 60})
    path = root / "music-avqa.zarr"
    from pipeline.store import FeatureStore

    fs, rng = FeatureStore(path, mode="r+"), np.random.default_rng(0)
    clip = np.repeat(np.arange(videos), per_video).astype(np.int32)
    fs.put("question_clip", clip, per_clip=False)
    fs.put("question_split", np.zeros(len(clip), np.int8), per_clip=False)   # all train
    fs.put("question_answer", rng.integers(0, 41, len(clip)).astype(np.int16), per_clip=False)
    fs.put("question_type", rng.integers(0, 9, len(clip)).astype(np.int8), per_clip=False)
    fs.put("question_emb", rng.normal(size=(len(clip), 64)).astype(np.float16), per_clip=False)
    return path


def time_steps(store: Path, run: int, a: argparse.Namespace) -> tuple[float, float]:
    torch.manual_seed(0)
    ts = open_task("music-avqa", store)
    n = ts.n("train")
    sampler = TaskSampler({"music-avqa": n}, a.batch, {"music-avqa": 1}, 0,
                          groups={"music-avqa": ts.clip_index(ts.samples["train"])}, run=run)
    data = BatchDataset({"music-avqa": ts}, {"avqa": True})
    specs = [s for s, _ in zip(sampler, range(a.warmup + a.steps))]
    batches = [data[s] for s in specs]
    videos = statistics.mean(len(np.unique(b["clip_index"])) for b in batches)
    cfg = ModelConfig(d_model=a.d_model, n_heads=a.heads, d_ff=2 * a.d_model, T=60, visual_dim=ts.visual_dim,
                      n_patches=ts.n_patches, dropout=0.0, mask_channels=16)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    norm = feature_stats({"music-avqa": ts})
    vocab, valid = task_tensors(ts, torch.device("cpu"))
    times = []
    for k, b in enumerate(batches):
        t0 = time.perf_counter()
        b = {key: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for key, v in b.items() if key != "task"}
        b = to_device(b, torch.device("cpu"), norm)
        loss = TASKS["avqa"].loss(model(b, "avqa", vocab, valid), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if k >= a.warmup:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, help="a MUSIC-AVQA store (default: generate one)")
    ap.add_argument("--run", type=int, default=4, help="questions per video to compare with 1")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=64, help="64 = the demo's model, 512 = the paper's")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avu-bench-avqa-") as tmp:
        store = a.store or generated_store(Path(tmp), 40, 20)
        print(f"store {a.store or 'generated (40 videos x 20 questions, T 60, 4 x 4 patches)'}; "
              f"d_model {a.d_model}, batch {a.batch}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}")
        mixed, v1 = time_steps(store, 1, a)
        grouped, vn = time_steps(store, a.run, a)
    print(f"any mix:              {mixed:7.1f} ms a step ({v1:.1f} videos a batch)")
    print(f"runs of {a.run} a video:     {grouped:7.1f} ms a step ({vn:.1f} videos a batch)")
    print(f"ratio: {mixed / grouped:.2f}x faster steps")


if __name__ == "__main__":
    main()
