"""AV-Unified (arXiv 2603.06530): MS-STPM encoder and the shared token output side.

    batch -> input projections -> TPM (multi-scale windowed HAN layers, eq. 1-4)
          -> SPM (patch self-attention, audio <-> patch attention, eq. 5-6)
          -> TPGL (prompt gate on TPM and SPM tokens, eq. 7-9) -> feats
    TPM and SPM never see the prompt: SPM takes the TPM audio before the gate (eq. 6 uses the
    TPM output; the paper gates both outputs afterwards, section III-D). Samples of one clip in
    a batch (`clip_rows`; MUSIC-AVQA's questions about one video) therefore run them once.
    feats -> task head (trainer/tasks/) -> TokenHead (decoder + cosine scoring of vocabulary
             embeddings, constrained to the task's valid tokens) or a dense decoder

Choices where the paper is silent (each covered by tests/test_model.py or tests/test_padding.py):
- Audio and visual share every TPM layer, as in HAN; both run as one (2B, T, D) batch.
- TPM scale S restricts attention to |i - j| <= S // 2; S = 0 means the whole sequence. The
  default scales are 2, 4, 8, ... below T, then 0. Eq. 4 concatenates the layer input and
  every scale's output along channels, then projects back to d_model (+ LayerNorm).
- SPM, eq. 6 left: a patch attending to its frame's single audio token would have a softmax
  over one key (identically 1: its query and key projections would get no gradient). Patches
  therefore attend over [audio_t, a learned null token], so each patch chooses how much
  audio to take: a per-patch, audio-guided weight. Eq. 6 right: the TPM audio of frame t
  attends over that frame's patches. Residual + LayerNorm after each step.
- TPGL, eq. 8: the gate is the softmax of prompt-query x token-key similarities (W_TPM over
  the 2T TPM tokens, W_SPM per frame over the M + 1 SPM tokens), a weight per token, times the
  number of tokens so a uniform prompt leaves features unchanged. Keys are Linear + ReLU of
  the tokens (eq. 7); the gate multiplies the tokens themselves, so they stay signed for the
  cosine heads. The SPM gate multiplies the SPM audio token and the patches.
- The gate weights are read out as weights, so they are a matmul + softmax, not `attend`.
- Token interface: decoder = post-norm cross-attention + FFN layers from task queries over
  one memory sequence [TPM audio, TPM visual, SPM audio, SPM patches] (eq. 9's "single
  sequence"), each token tagged with a learned type embedding and a sinusoidal time code.
  The backbone itself has no positional embedding (HAN has none).
- Scoring: cosine(state, Linear(vocab_emb)) x exp(logit_scale) (init 10, clamped to 100),
  computed in fp32; tokens outside valid_ids are set to -inf. `class_logits` gathers the valid
  columns in valid_ids order, so a task's targets are positions in its valid_ids.
- SPM runs only for heads that read patches (`Head.uses_patches`); LLP skips it.
- encode() also returns the unimodal streams `audio_in` (projected VGGish) and
  `patches_visual` (patches after eq. 5 only): VGG-SS's contrastive heatmap needs features
  that have not seen the other modality (trainer/tasks/vggss.py says why).
- Scales follow ModelConfig.T (the clip length trained on); any T runs, and a window wider than
  a clip covers all of it.

Padded batches (tests/test_padding.py): a batch of clips of different lengths is padded to its
longest and carries `length` (B,), each sample's real seconds; encode() turns it into
`frame_valid` (B, T). A clip's outputs on its real seconds are then what the clip cut to its
length gives alone, whatever the padding holds:
- TPM: padded seconds are masked as keys of the self- and cross-modal attention, on top of
  each scale's window (trainer/attention.padding_mask). A padded query whose window holds only
  padding attends over its whole window instead (don't-care, but finite: no empty softmax).
- SPM works within a frame (patches, that frame's audio token, the null token): nothing to
  mask, nothing crosses frames.
- TPGL: gate_tpm's softmax runs over the 2 x length real tokens and "times N" uses that count;
  padded tokens get weight 0. gate_spm is per frame.
- Decoder: the memory tokens of padded seconds (TPM audio and visual, SPM audio, patches) are
  masked as keys. The time code counts seconds from 0, the same at any padding.
- Heads: AVE's CE and LLP's softmax over time take the real seconds only; VGG-SS reads the
  middle of the real seconds (length // 2); AVS predicts background past the end.
- Outputs at padded positions are don't-care (finite). With `clip_rows`, a clip's length is
  that of its samples. Without `length` nothing is masked: the computation is the unpadded one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.attention import Attention, padding_mask, window_mask


def default_scales(T: int) -> tuple[int, ...]:
    """2, 4, 8, ... below T, then 0 (the whole sequence)."""
    scales, S = [], 2
    while S < T:
        scales.append(S)
        S *= 2
    return tuple(scales) + (0,)


@dataclass
class ModelConfig:
    d_model: int = 512           # HAN width
    n_heads: int = 4             # heads of <= 256 dims keep the flash kernel eligible
    d_ff: int = 512              # HAN FFN width
    T: int = 10                  # the clip length the default scales are built for; any T runs
    scales: tuple[int, ...] = ()  # window size S per TPM layer (0 = whole sequence); () = default_scales(T)
    audio_dim: int = 128         # VGGish
    visual_dim: int = 768        # CLIP joint dim: frame CLS, patches, prompt and vocabulary
    n_patches: int = 64          # patches per frame, a g x g grid (the dense heads read g from it)
    dropout: float = 0.1         # HAN: attention weights and residual branches
    dec_layers: int = 1          # token decoder depth
    mask_channels: int = 64      # AVS mask decoder width (a multiple of 8: GroupNorm)

    def __post_init__(self) -> None:
        self.scales = tuple(self.scales) or default_scales(self.T)
        assert self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads"
        assert self.d_model // self.n_heads <= 256, "head dim > 256 rules out the flash kernel"
        assert all(S >= 0 for S in self.scales), "scales are window sizes >= 0"
        assert math.isqrt(self.n_patches) ** 2 == self.n_patches, "n_patches must be a square grid"

    @property
    def grid(self) -> int:
        return math.isqrt(self.n_patches)


class FFN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


# ---------------------------------------------------------------------------------------------
# TPM: multi-scale temporal perception (eq. 1-4)

class TPMLayer(nn.Module):
    """HAN layer: x = norm(x + drop(cm_attn(x, other)) + drop(self_attn(x, x))); x = norm(x + drop(ffn(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.cm_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ffn = FFN(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, other: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.drop(self.cm_attn(x, other, mask)) + self.drop(self.self_attn(x, x, mask))
        x = self.norm1(x)  # (N, T, D)
        return self.norm2(x + self.drop(self.ffn(x)))


class TPM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scales = cfg.scales
        self.layers = nn.ModuleList(TPMLayer(cfg) for _ in cfg.scales)
        self.fuse = nn.Linear((len(cfg.scales) + 1) * cfg.d_model, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, a: Tensor, v: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """a, v (B, T, D); valid (B, T) bool, the real seconds (None: all)."""
        B, T, _ = a.shape
        x = torch.cat([a, v], dim=0)  # (2B, T, D): audio and visual share each layer
        valid = None if valid is None else torch.cat([valid, valid], dim=0)  # (2B, T)
        outs = [x]
        for S, layer in zip(self.scales, self.layers):
            other = torch.cat([x[B:], x[:B]], dim=0)  # each modality's counterpart
            mask = window_mask(T, S, x.device)
            x = layer(x, other, mask if valid is None else padding_mask(valid, mask))
            outs.append(x)
        x = self.norm(self.fuse(torch.cat(outs, dim=-1)))  # (2B, T, D), eq. 4
        return x[:B], x[B:]


# ---------------------------------------------------------------------------------------------
# SPM: spatial perception (eq. 5-6)

class SPM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.d_model
        self.patch_attn = Attention(D, cfg.n_heads, cfg.dropout)     # eq. 5
        self.audio_guided = Attention(D, cfg.n_heads, cfg.dropout)   # eq. 6 left: patches <- audio
        self.patch_guided = Attention(D, cfg.n_heads, cfg.dropout)   # eq. 6 right: audio <- patches
        self.null = nn.Parameter(torch.randn(1, 1, D) * 0.02)      # "take no audio" key/value
        self.norm_p1 = nn.LayerNorm(D)
        self.norm_p2 = nn.LayerNorm(D)
        self.norm_a = nn.LayerNorm(D)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, a_in: Tensor, a_tpm: Tensor, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """a_in: projected input audio, a_tpm: TPM audio (B, T, D); p: patches (B, T, M, D).
        Returns the audio and patch outputs and the patches after self-attention alone (eq. 5),
        which hold no audio."""
        B, T, M, D = p.shape
        p = p.reshape(B * T, M, D)
        p_hat = self.norm_p1(p + self.drop(self.patch_attn(p, p)))  # (BT, M, D)
        audio = torch.cat([a_in.reshape(B * T, 1, D), self.null.expand(B * T, 1, D)], dim=1)
        p_til = self.norm_p2(p_hat + self.drop(self.audio_guided(p_hat, audio)))  # (BT, M, D)
        a = a_tpm.reshape(B * T, 1, D)
        a_til = self.norm_a(a + self.drop(self.patch_guided(a, p_hat)))  # (BT, 1, D)
        return a_til.view(B, T, D), p_til.view(B, T, M, D), p_hat.view(B, T, M, D)


# ---------------------------------------------------------------------------------------------
# TPGL: task-prompt guided gate (eq. 7-9)

def prompt_gate(q: Tensor, keys: Tensor, valid: Tensor | None = None) -> Tensor:
    """q (..., D), keys (..., N, D) -> N x softmax over N of q.k / sqrt(D), shape (..., N).

    valid (..., N) bool: the softmax runs over the valid tokens only and N counts them, so the
    weights of a clip's real tokens do not depend on its padding; padded tokens get weight 0."""
    N, D = keys.shape[-2:]
    sim = torch.einsum("...d,...nd->...n", q, keys) / math.sqrt(D)
    if valid is None:
        return N * F.softmax(sim.float(), dim=-1).to(keys.dtype)
    w = F.softmax(sim.float().masked_fill(~valid, float("-inf")), dim=-1)
    return (valid.sum(-1, keepdim=True) * w).to(keys.dtype)


class TPGL(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.key_tpm = nn.Linear(cfg.d_model, cfg.d_model)
        self.key_spm = nn.Linear(cfg.d_model, cfg.d_model)

    def gate_tpm(self, q: Tensor, a: Tensor, v: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """valid (B, T): the real seconds; the softmax runs over their 2 x length tokens."""
        T = a.shape[1]
        f = torch.cat([a, v], dim=1)  # (B, 2T, D), eq. 7
        valid = None if valid is None else torch.cat([valid, valid], dim=1)  # (B, 2T)
        w = prompt_gate(q, F.relu(self.key_tpm(f)), valid)  # (B, 2T)
        f = w[..., None] * f  # eq. 9
        return f[:, :T], f[:, T:]

    def gate_spm(self, q: Tensor, a: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        f = torch.cat([a[:, :, None], p], dim=2)  # (B, T, M+1, D), eq. 7
        w = prompt_gate(q[:, None], F.relu(self.key_spm(f)))  # (B, T, M+1)
        f = w[..., None] * f  # eq. 9
        return f[:, :, 0], f[:, :, 1:]


# ---------------------------------------------------------------------------------------------
# Shared token interface: decoder over one memory sequence + cosine scoring of the vocabulary

def time_code(T: int, D: int, device: torch.device) -> Tensor:
    """(T, D) sinusoidal code of segment index."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, D, 2, device=device) * (-math.log(10000.0) / D))
    code = torch.zeros(T, D, device=device)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: D // 2])
    return code


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cross_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ffn = FFN(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.norm1(x + self.drop(self.cross_attn(x, memory, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class TokenHead(nn.Module):
    """The one output mechanism for classes, answers and times (shared by all tasks)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.vocab_proj = nn.Linear(cfg.visual_dim, cfg.d_model)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.type_emb = nn.Parameter(torch.randn(4, cfg.d_model) * 0.02)  # TPM a, TPM v, SPM a, patch
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    def memory(self, feats: dict[str, Tensor]) -> Tensor:
        """The single sequence [TPM audio, TPM visual, SPM audio, patches]: (B, 3T + T*M, D)."""
        a, v = feats["audio"], feats["visual"]
        B, T, D = a.shape
        time = time_code(T, D, a.device).to(a.dtype)  # (T, D)
        e = self.type_emb.to(a.dtype)
        parts = [a + e[0] + time, v + e[1] + time]
        if "patches" in feats:
            parts.append(feats["spm_audio"] + e[2] + time)
            patches = feats["patches"] + e[3] + time[:, None]  # (B, T, M, D)
            parts.append(patches.flatten(1, 2))
        return torch.cat(parts, dim=1)

    @staticmethod
    def memory_valid(feats: dict[str, Tensor]) -> Tensor | None:
        """(B, 3T + T*M) bool, True at the memory tokens of real seconds; None without frame_valid."""
        if "frame_valid" not in feats:
            return None
        fv = feats["frame_valid"]  # (B, T)
        parts = [fv, fv]
        if "patches" in feats:
            parts += [fv, fv.repeat_interleave(feats["patches"].shape[2], dim=1)]  # patches (t, m) order
        return torch.cat(parts, dim=1)

    def decode(self, queries: Tensor, feats: dict[str, Tensor]) -> Tensor:
        """Decoder states for task queries (B, L, D) over the memory -> (B, L, D). The memory
        tokens of padded seconds are masked as keys."""
        memory = self.memory(feats)
        valid = self.memory_valid(feats)
        mask = None if valid is None else padding_mask(valid)
        x = queries
        for layer in self.layers:
            x = layer(x, memory, mask)
        return x

    def class_embeddings(self, vocab_emb: Tensor, valid_ids: Tensor) -> Tensor:
        """Unit-norm projected embeddings of the valid tokens, in valid_ids order: (K, D)."""
        return F.normalize(self.vocab_proj(vocab_emb[valid_ids]).float(), dim=-1)

    def score(self, states: Tensor, vocab_emb: Tensor, valid_ids: Tensor) -> dict[str, Tensor]:
        """states (..., D) -> token_logits (..., V), -inf outside valid_ids; class_logits (..., K)."""
        vocab = F.normalize(self.vocab_proj(vocab_emb).float(), dim=-1)  # (V, D)
        logits = self.scale() * F.normalize(states.float(), dim=-1) @ vocab.T  # (..., V)
        valid = torch.zeros(vocab.shape[0], dtype=torch.bool, device=logits.device)
        valid[valid_ids] = True
        token_logits = logits.masked_fill(~valid, float("-inf"))
        return {"token_logits": token_logits, "class_logits": token_logits[..., valid_ids]}


# ---------------------------------------------------------------------------------------------
# The model

class AVUnified(nn.Module):
    """MS-STPM + shared TokenHead + the heads (trainer.tasks.HEADS; trainer/runtime.py builds it)."""

    def __init__(self, cfg: ModelConfig, heads: dict[str, nn.Module]):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.embed = nn.ModuleDict({
            "audio": nn.Linear(cfg.audio_dim, D),
            "visual": nn.Linear(cfg.visual_dim, D),
            "patches": nn.Linear(cfg.visual_dim, D),
            "prompt": nn.Linear(cfg.visual_dim, D),
        })
        self.tpm = TPM(cfg)
        self.spm = SPM(cfg)
        self.tpgl = TPGL(cfg)
        self.tokens = TokenHead(cfg)
        self.heads = nn.ModuleDict(heads)

    def encode(self, batch: dict[str, Tensor], spatial: bool = True) -> dict[str, Tensor]:
        """MS-STPM features. spatial=False skips SPM (no patches needed).

        TPM and SPM do not see the prompt (the paper's order: TPM -> SPM -> TPGL, eq. 6 takes
        the TPM audio before the gate). Given `clip_rows` (B,), the features hold one row per
        clip (trainer/data.py: MUSIC-AVQA's questions of one video) and TPM and SPM run once per
        clip; only the gates and the head run per sample."""
        rows = batch.get("clip_rows")
        frame_valid = clip_valid = None
        if "length" in batch:   # (B,): the sample's real seconds; frame_valid (B, T) marks them
            length = batch["length"].to(batch["audio"].device)
            seconds = torch.arange(batch["audio"].shape[1], device=length.device)
            frame_valid = seconds < length[:, None]
            clip_length = length if rows is None else length.new_zeros(batch["audio"].shape[0]).scatter_reduce(
                0, rows, length, "amax")   # the samples of one clip share its length
            clip_valid = seconds < clip_length[:, None]     # (U, T): what TPM masks
        # index_select, not x[rows]: x[rows]'s backward is index_put with accumulate, which ATen
        # runs with racing atomic float adds on several CPU threads, so two identical trainings
        # differed from step 10. index_select's backward (index_add) sums rows in index order.
        each = (lambda x: x) if rows is None else (lambda x: torch.index_select(x, 0, rows))
        a_in = self.embed["audio"](batch["audio"])          # (U, T, D)
        v_in = self.embed["visual"](batch["visual"])        # (U, T, D)
        a_t, v_t = self.tpm(a_in, v_in, clip_valid)         # 2 x (U, T, D)
        q = self.embed["prompt"](batch["prompt"])           # (B, D)
        a, v = self.tpgl.gate_tpm(q, each(a_t), each(v_t), frame_valid)  # 2 x (B, T, D)
        feats = {"audio": a, "visual": v, "prompt": q}
        if frame_valid is not None:
            feats["frame_valid"] = frame_valid
        if spatial:
            p_in = self.embed["patches"](batch["patches"])  # (U, T, M, D)
            a_s, p, p_hat = self.spm(a_in, a_t, p_in)
            feats["spm_audio"], feats["patches"] = self.tpgl.gate_spm(q, each(a_s), each(p))  # (B, T, D), (B, T, M, D)
            feats["audio_in"], feats["patches_visual"] = each(a_in), each(p_hat)   # unimodal streams (VGG-SS)
        return feats

    def forward(self, batch: dict[str, Tensor], head: str, vocab_emb: Tensor | None = None,
                valid_ids: Tensor | None = None, **options) -> dict[str, Tensor]:
        """Features and the head's outputs. vocab_emb: (V, visual_dim) cached CLIP text
        embeddings; valid_ids: (K,) token ids of the benchmark's classes/answers, in class order;
        options: the benchmark's keyword arguments of its head (Benchmark.head_options)."""
        head = self.heads[head]
        if valid_ids is not None:
            valid_ids = torch.as_tensor(valid_ids, dtype=torch.long, device=batch["audio"].device)
        feats = self.encode(batch, spatial=head.uses_patches)
        return {**feats, **head(feats, self.tokens, vocab_emb, valid_ids, **options)}
