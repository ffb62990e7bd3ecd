"""Checkpoints: written atomically, read with `weights_only=True` (no pickled code runs).

A checkpoint is a dict of tensors and plain values only (dicts, lists, tuples, str, int,
float, bool, None), which is what the weights-only unpickler accepts:
    model, optimizer, scheduler   state dicts
    sampler                       {"step", "counts"}: trainer.data.TaskSampler's state
    rng                           torch (CPU and every CUDA device), numpy and python states,
                                  numpy's key array as a tensor
    step, best, config, model_config, tasks, version
Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target: a crash leaves the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

VERSION = 1


def save(state: dict, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by `save`; refuses anything that would need to run pickled code."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def rng_state() -> dict:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
