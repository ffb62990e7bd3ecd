from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ExtractConfig
from pipeline.timecode import write_clip

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "data" / "samples"
ANNOTATIONS = SHARED / "data" / "annotations"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture(scope="session")
def timecode_dir(tmp_path_factory) -> Path:
    """Time-coded clips at several frame rates and lengths (one shorter than T = 10)."""
    d = tmp_path_factory.mktemp("timecode")
    for name, fps, seconds in [("fps25", 25.0, 10.0), ("fps2997", 30000 / 1001, 10.0),
                               ("fps12_short", 12.0, 7.3), ("fps30", 30.0, 10.0)]:
        write_clip(d / f"{name}.mp4", seconds, fps)
    return d


@pytest.fixture(scope="session")
def bad_dir(timecode_dir, tmp_path_factory) -> Path:
    """Good clips plus a zero-byte file, a corrupt file and a file with no audio track."""
    d = tmp_path_factory.mktemp("mixed")
    for p in sorted(timecode_dir.glob("*.mp4"))[:2]:
        (d / p.name).write_bytes(p.read_bytes())
    (d / "zero.mp4").write_bytes(b"")
    good = (timecode_dir / "fps25.mp4").read_bytes()
    (d / "corrupt.mp4").write_bytes(good[: len(good) // 2])      # truncated: moov atom lost
    write_clip(d / "silent.mp4", 10.0, 25.0, audio=False)
    return d


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on busy cores OpenMP threads contend."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**kw) -> ExtractConfig:
    """A tiny random open_clip model and random VGGish: tests where weights are not the point."""
    values = dict(clip_model="avu-tiny-clip", random_weights=True, workers=0, clip_batch=16,
                  clips_per_task=2, patch_grid=4, decode_threads=2)
    return ExtractConfig(**{**values, **kw})
