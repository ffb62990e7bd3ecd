"""The frozen encoders of stage one: CLIP (open_clip) for frames and text, VGGish for audio.

CLIP gives, per frame, the projected [CLS] embedding and the patch tokens projected into the
same joint space (optionally average-pooled to a g x g grid), and text embeddings for prompts,
questions and the vocabulary. VGGish gives one 128-d embedding per feature step (`hop`
seconds; decode.py): each step gets its own 96 x 64 log-mel example, so audio feature k belongs
to step k (torchvggish's own 0.96 s framing drifts). The example of step k is cut from the
clip's samples starting 0.5 s before the step's middle, (k + 0.5) * hop - 0.5 seconds, zeros
before the clip's first sample and past its last. At hop = 1 that is exactly the first 0.96 s
of second k, as avu always did (features bit-identical); at every hop the example's 96 frames
span [middle - 0.5, middle + 0.475) s, centred 12.5 ms before the step's middle (a strictly
centred example would start 200 samples later; one rule for every hop keeps hop = 1 as it
was). The log-mel is computed here in torch, batched, on the encoder's device; it matches
torchvggish's numpy code (tests/test_encoders.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"

CLIP_URLS = {  # where the official weights live, for the error message and `download`
    "ViT-L-14-quickgelu": "https://openaipublic.azureedge.net/clip/models/"
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-B-16-quickgelu": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-B-32-quickgelu": "https://openaipublic.azureedge.net/clip/models/"
    "40d3715987af7d43a4f8b1e2d8e9db66b6ff8a6a0c79c2b6fa8f1fa77e3da0ee/ViT-B-32.pt",
}
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"


# encoder precisions: None = float32. Text is always embedded in float32 (a few thousand strings).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


class WeightsError(FileNotFoundError):
    """Pretrained weights are missing and neither download nor random weights were asked for."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist()[:500])
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError):
        return False


def register_model_configs() -> None:
    import open_clip

    if "avu-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIGS)


def missing_weights_message(what: str, path: Path, setting: str, url: str | None) -> str:
    where = f"download it from {url} and save it as {path}" if url else f"put the checkpoint at {path}"
    return (
        f"{what} weights not found: {path}. To fix: {where}; or point `{setting}=PATH` at your "
        f"copy; or pass --download (needs internet); or pass --random-weights for a random "
        f"encoder (every output then says so)."
    )


# ----------------------------------------------------------------------------- CLIP


def clip_preprocess(frames: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float: shortest side to `size` (bicubic,
    antialiased), centre crop, normalise. Same geometry as open_clip's PIL transform."""
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(size * long / short)
    new_hw = (size, new_long) if h <= w else (new_long, size)
    x = F.interpolate(x, size=new_hw, mode="bicubic", antialias=True, align_corners=False)
    top, left = int(round((new_hw[0] - size) / 2.0)), int(round((new_hw[1] - size) / 2.0))
    x = x[..., top : top + size, left : left + size].clamp(0, 255) / 255.0
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ClipEncoder:
    """open_clip model for frames ([CLS] + projected patch tokens) and text."""

    def __init__(self, model_name: str, weights: str | None, device: str = "cpu", patch_grid: int = 0,
                 precision: str = "fp32"):
        import open_clip

        register_model_configs()
        self.model_name, self.device = model_name, torch.device(device)
        self.dtype = precision_dtype(precision)
        if weights and is_torchscript(Path(weights)):
            # OpenAI's own checkpoints are TorchScript archives: unreadable with weights_only
            model = open_clip.create_model(model_name, pretrained=None)
            open_clip.load_checkpoint(model, weights, weights_only=False)
            model = model.to(self.device)
        else:  # weights=None builds a random model: the caller asked for it explicitly
            model = open_clip.create_model(model_name, pretrained=weights, device=self.device)
        self.model = model.eval().requires_grad_(False)
        visual = self.model.visual
        if not hasattr(visual, "grid_size") or getattr(visual, "proj", None) is None:
            raise ValueError(f"CLIP model {model_name!r} has no projected patch tokens: use a ViT model")
        visual.output_tokens = True
        pp = open_clip.get_model_preprocess_cfg(self.model)
        size = pp["size"]
        self.image_size = size if isinstance(size, int) else size[0]
        self.mean, self.std = pp["mean"], pp["std"]
        self.native_grid = tuple(visual.grid_size)
        self.grid = (patch_grid, patch_grid) if patch_grid else self.native_grid
        self.dim = visual.proj.shape[1]
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @torch.inference_mode()
    def encode_frames(self, pixels: torch.Tensor, patches: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, 3, S, S) preprocessed -> cls (N, D), patches (N, gh * gw, D), both projected;
        patches=False: (cls, None), the tokens neither projected nor pooled (cls is the same)."""
        visual = self.model.visual
        # bf16 / fp16: autocast (layer norms and softmax stay float32), as open_clip's amp modes
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            cls, tokens = visual(pixels.to(self.device))      # tokens (N, L, width) after ln_post
            if not patches:
                return cls.float(), None
            tokens = tokens @ visual.proj                      # (N, L, D): into the joint space
        cls, tokens = cls.float(), tokens.float()
        if self.grid != self.native_grid:
            n, _, d = tokens.shape
            grid = tokens.transpose(1, 2).reshape(n, d, *self.native_grid)
            tokens = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)
        return cls, tokens

    @torch.inference_mode()
    def encode_text(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        """(N, D) L2-normalised text embeddings (prompts, questions, vocabulary phrases)."""
        out = [
            self.model.encode_text(self.tokenizer(texts[i : i + batch]).to(self.device), normalize=True)
            for i in range(0, len(texts), batch)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.dim)


# ----------------------------------------------------------------------------- VGGish

_MEL_LOW_HZ, _MEL_HIGH_HZ, _N_MELS = 125.0, 7500.0, 64
_WIN, _HOP, _NFFT = 400, 160, 512          # 25 ms, 10 ms at 16 kHz; FFT 512
_EXAMPLE_FRAMES = 96


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)   # HTK


@lru_cache(maxsize=4)
def mel_matrix(sample_rate: int = 16000) -> np.ndarray:
    """(NFFT/2 + 1, 64) triangular HTK mel weights, DC bin zeroed (as VGGish)."""
    n_bins = _NFFT // 2 + 1
    bins_mel = _hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_bins))
    edges = np.linspace(_hz_to_mel(np.float64(_MEL_LOW_HZ)), _hz_to_mel(np.float64(_MEL_HIGH_HZ)), _N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rise = (bins_mel[:, None] - lower) / (center - lower)
    fall = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rise, fall))
    weights[0, :] = 0.0
    return weights


def log_mel(wave: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """(B, L) waveform -> (B, frames, 64) VGGish log-mel: periodic Hann, |rfft 512|, mel, log(+0.01)."""
    frames = wave.unfold(-1, _WIN, _HOP)                                    # (B, F, 400)
    n = torch.arange(_WIN, device=wave.device, dtype=torch.float64)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / _WIN)).to(wave.dtype)
    spec = torch.fft.rfft(frames * window, n=_NFFT).abs()                 # (B, F, 257)
    mel = spec @ torch.from_numpy(mel_matrix(sample_rate)).to(spec)         # (B, F, 64)
    return torch.log(mel + 0.01)


def example_windows(audio: torch.Tensor, T: int, sample_rate: int = 16000, hop: float = 1.0) -> torch.Tensor:
    """(B, T * hop * sr) -> (B * T, sr): the samples each step's example is cut from, one second
    starting 0.5 s before the step's middle (zeros outside the clip). A strided view of the
    padded audio; at hop = 1 exactly the clip's 1-second pieces."""
    from .decode import step_samples

    H = step_samples(hop, sample_rate)
    start = (H - sample_rate) // 2                 # example 0 starts here: 0 at hop = 1, -0.375 s at 0.25
    need = start + (T - 1) * H + sample_rate       # one past the last example's last sample
    left, right = max(0, -start), max(0, need - audio.shape[-1])
    if left or right:
        audio = F.pad(audio, (left, right))
    audio = audio[..., max(0, start):]
    return audio.unfold(-1, sample_rate, H)[:, :T].reshape(-1, sample_rate)


def vggish_examples(audio: torch.Tensor, T: int, sample_rate: int = 16000, hop: float = 1.0) -> torch.Tensor:
    """(B, T * hop * sr) -> (B * T, 1, 96, 64): one example for each step (example_windows)."""
    return _examples(example_windows(audio, T, sample_rate, hop), sample_rate)


def _examples(windows: torch.Tensor, sample_rate: int) -> torch.Tensor:
    return log_mel(windows, sample_rate)[:, :_EXAMPLE_FRAMES, None].transpose(1, 2)


MEL_ROWS = 1024   # examples whose log-mel is computed together: a 10-min clip at 0.25 s is 2400 (~1.2 GB
                  # at once); no batch of a hop = 1 store reaches it (a 600 s clip is 600 examples)


class VGGishEncoder:
    """torchvggish's network (raw 128-d embeddings after the last ReLU, no PCA)."""

    def __init__(self, weights: str | None, device: str = "cpu", precision: str = "fp32"):
        from torchvggish.torchvggish import _vgg

        self.device = torch.device(device)
        self.dtype = precision_dtype(precision)
        net = _vgg(postprocess=False)
        if weights is not None:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        # channels-last convolutions: 0.29 vs 0.38 s per 10 s clip on 2 CPU cores (BENCHMARKS.md)
        self.net = net.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)
        if self.dtype is not None:
            # weights cast once, not by autocast at every call: VGGish's 72 M fully connected
            # weights would cost a cast per batch (bf16 on 2 CPU cores: 49 vs 60 ms a clip, 10 examples)
            self.net = self.net.to(self.dtype)

    @torch.inference_mode()
    def __call__(self, audio: torch.Tensor, T: int, sample_rate: int = 16000, batch: int = 128,
                 hop: float = 1.0) -> torch.Tensor:
        """(B, T * hop * sr) float32 -> (B, T, 128): every step of the clips in one pass."""
        windows = example_windows(audio.to(self.device, torch.float32), T, sample_rate, hop)
        out = []
        for j in range(0, len(windows), MEL_ROWS):
            examples = _examples(windows[j:j + MEL_ROWS], sample_rate)
            examples = examples.to(self.dtype or torch.float32).contiguous(memory_format=torch.channels_last)
            out += [self.net(examples[i : i + batch]) for i in range(0, len(examples), batch)]
        return torch.cat(out).float().reshape(audio.shape[0], T, -1)


logging.getLogger("root").addFilter(lambda r: "Model initialized randomly" not in r.getMessage())
