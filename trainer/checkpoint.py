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
Reading fails with a CheckpointError that names the file: one that would need other objects
(classes, functions: anything the weights-only unpickler refuses) is not loaded, since loading it
could run code; one cut short, damaged or not a checkpoint at all says so.
"""

from __future__ import annotations

import os
import pickle
import random
import re
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


# what torch's weights-only unpickler says when it refuses an object (and which): a class or
# function to import, an object to build or call; anything else it raises is a damaged file
REFUSED = re.compile(r"GLOBAL ([\w.]+)|create new object .* but got <class '([\w.]+)'>"
                     r"|reduce for unrecognized function (\S+)|must be imported to load (\S+)")


class CheckpointError(ValueError):
    """A checkpoint file that is refused or cannot be read; the message names the file."""


def load(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by `save`; refuses anything that would need to run pickled code.
    A missing file raises FileNotFoundError, a refused or unreadable one CheckpointError."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise                                   # named by the OS
    except pickle.UnpicklingError as err:
        refused = REFUSED.search(str(err))
        if refused:
            raise CheckpointError(
                f"{path}: not loaded: it holds objects other than tensors and plain values (here "
                f"{next(g for g in refused.groups() if g)}), and loading those would run pickled code, which avu "
                f"never does. Checkpoints written by avu train hold only tensors, numbers, strings, lists and "
                f"dicts") from None
        raise CheckpointError(unreadable(path, err)) from None
    except Exception as err:                    # torch's reader: RuntimeError, EOFError, KeyError, ...
        raise CheckpointError(unreadable(path, err)) from None


def unreadable(path: Path, err: Exception) -> str:
    """The message for a file torch cannot read, with torch's reason in short."""
    size = path.stat().st_size if path.is_file() else 0
    text = str(err)
    inner = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)   # e.g. "Unsupported operand 54"
    reason = inner.group(1) if inner else text.split(". ")[0].strip()
    if len(reason) < 16:                       # e.g. KeyError's "101": say what kind of error
        reason = f"{type(err).__name__} {reason}".strip()
    reason = " ".join(reason.split())
    reason = reason if len(reason) <= 160 else reason[:160] + "..."
    return (f"{path}: cannot be read as a checkpoint ({'the file is empty' if not size else reason}): it was "
            f"cut short or damaged, or is not a checkpoint written by avu ({size} bytes)")


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
