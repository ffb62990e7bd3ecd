"""The model and where it runs: building it, the device, its precision, loading a checkpoint.

    model = build_model(ModelConfig(...))               # AVUnified with a head per HEADS entry
    device = resolve_device("auto")                      # cuda if there is one, else cpu
    with autocast(device, "auto"): out = model(...)      # bf16 on CUDA, fp32 on CPU
    model, state = load_model(Path("runs/joint/checkpoints/best.pt"), device)
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from trainer import checkpoint as ckpt
from trainer.model import AVUnified, ModelConfig
from trainer.tasks import HEADS


def build_model(mcfg: ModelConfig) -> AVUnified:
    return AVUnified(mcfg, {name: head.Head(mcfg) for name, head in HEADS.items()})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA for "auto"/"bf16"; fp32 otherwise (CPU "auto" stays fp32)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def task_tensors(ts, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A TaskStore's vocabulary embeddings and valid ids on the device (what the model call takes)."""
    valid = None if ts.valid_ids is None else torch.as_tensor(ts.valid_ids, device=device)
    return torch.as_tensor(ts.vocab_emb, device=device), valid


def load_model(path: Path, device: torch.device) -> tuple[AVUnified, dict]:
    state = ckpt.load(path)
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
