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
- Scales follow ModelConfig.T (the longest clip trained on); any T runs, and a window wider than
  a clip covers all of it.

TPM scales per benchmark (one set of layers, shared): the model holds one TPM layer per scale of
default_scales(T, max_window) (T = the longest clip of all the stores trained on) and one eq. 4
projection over all of them. A batch of benchmark b (batch["task"]) runs, in order, the layers
of the scales below b's own T (ModelConfig.task_T[b], its store's longest clip) and the widest
layer (scale 0), and eq. 4 projects the input and those outputs through their column blocks of
the one projection. So a 10 s benchmark runs 2, 4, 8, 0 (what it ran when the model was built
for 10 s clips alone) and MUSIC-AVQA (60 s) 2 ... 32, 0, with the same weights where the scales
are the same. Scale 0 is the whole clip up to max_window steps (128) and a window of
max_window beyond it: a dense benchmark (untrimmed clips up to 2,400 steps at 0.25 s) runs
2 ... 64 and a 128-step window, no quadratic layer. A batch with no task, or a task the model
was not built with (task_T lacks it), runs every layer. Windows are memory-linear on long
sequences (trainer/attention.py Band: blocked SDPA from BANDED_FROM steps on).
What moved: a model trained on stores with different T (the demo: 10 s clips beside
MUSIC-AVQA's 60 s) gives its short benchmarks fewer layers than before, the scales of their
own clips (10 s: 2, 4, 8, 0; 5 s: 2, 4, 0) instead of the 60 s ones (2 ... 32, 0); with one T
(or task_T empty, as in checkpoints written before it) the computation is the old one, bit
for bit.

Task experts (UniAV, ModelConfig.task_experts, default off): every TPM layer has one FFN per
benchmark of task_T in place of its shared FFN; the attention, the norms and the rest stay
shared. The task reaches them as batch["task"], which trainer/data.py puts in every batch (and
train.py leaves there). Off, the model has exactly the old parameters and computation.

Audio-only clips (batch["visual_valid"] (B,) False: no picture; its visual rows are zeros, not
frames): the visual stream of such a sample reaches no other token. TPM: its audio takes no
cross-modal term (the visual rows are its keys); SPM: its audio takes nothing from the patches;
TPGL: its visual tokens are left out of gate_tpm's softmax and count (weight 0), and gate_spm
runs over each frame's audio token alone (weight 1, the patches 0); decoder: its TPM visual
tokens and patches are masked as keys. Its outputs therefore do not depend on the visual rows
(tests/test_modality.py), the gated visual features and patches are 0, and feats carry
`visual_valid` for the heads. Every softmax keeps at least the audio tokens: nothing is empty.

No mask where nothing is masked: a batch whose clips all fill its T (and all have a picture)
passes no padding mask to attention or the gates (`partial`), so SDPA may take its fused
kernel on GPU; on CPU the result equals the masked computation bit for bit (a 40-step fit of
every task gives the same losses and weights, /work/notes/model.md).

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
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.attention import Attention, Band, padding_mask, window_mask


def default_scales(T: int, max_window: int = 0) -> tuple[int, ...]:
    """2, 4, 8, ... below T (and below max_window, where it is set), then 0 (the widest)."""
    top = min(T, max_window) if max_window else T
    scales, S = [], 2
    while S < top:
        scales.append(S)
        S *= 2
    return tuple(scales) + (0,)


def partial(valid: Tensor | None) -> Tensor | None:
    """`valid` where some entry is False, else None: a mask that masks nothing is not passed on,
    so SDPA may take its fused kernel (and the result is that of the masked computation)."""
    return None if valid is None or bool(valid.all()) else valid


@dataclass
class ModelConfig:
    d_model: int = 512           # HAN width
    n_heads: int = 4             # heads of <= 256 dims keep the flash kernel eligible
    d_ff: int = 512              # HAN FFN width
    T: int = 10                  # the clip length the default scales are built for; any T runs
    scales: tuple[int, ...] = ()  # window size S per TPM layer (0 = widest); () = default_scales(T, max_window)
    max_window: int = 128        # steps: the widest window; scale 0 is capped at it on longer clips (0: never)
    task_T: dict[str, int] = field(default_factory=dict)  # benchmark -> its clips' T: the scales its batches run
    task_experts: bool = False   # UniAV: a per-task FFN (one per task_T entry) in every TPM layer
    audio_dim: int = 128         # VGGish
    visual_dim: int = 768        # CLIP joint dim: frame CLS, patches, prompt and vocabulary
    n_patches: int = 64          # patches per frame, a g x g grid (the dense heads read g from it)
    dropout: float = 0.1         # HAN: attention weights and residual branches
    dec_layers: int = 1          # token decoder depth
    mask_channels: int = 64      # AVS mask decoder width (a multiple of 8: GroupNorm)

    def __post_init__(self) -> None:
        self.scales = tuple(self.scales) or default_scales(self.T, self.max_window)
        self.task_T = {str(k): int(v) for k, v in dict(self.task_T).items()}
        assert self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads"
        assert self.d_model // self.n_heads <= 256, "head dim > 256 rules out the flash kernel"
        assert all(S >= 0 for S in self.scales), "scales are window sizes >= 0"
        assert math.isqrt(self.n_patches) ** 2 == self.n_patches, "n_patches must be a square grid"
        assert self.max_window >= 0, "max_window is a window size >= 0"
        assert self.task_T or not self.task_experts, "task experts need the task names (task_T)"

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
    """HAN layer: x = norm(x + drop(cm_attn(x, other)) + drop(self_attn(x, x))); x = norm(x + drop(ffn(x))).
    With task experts the FFN is the batch's task's own (UniAV); the attention stays shared."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.cm_attn = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        if cfg.task_experts:
            self.experts = nn.ModuleDict({t: FFN(cfg) for t in sorted(cfg.task_T)})
        else:
            self.ffn = FFN(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def feed_forward(self, task: str | None) -> nn.Module:
        if not hasattr(self, "experts"):
            return self.ffn
        if task not in self.experts:
            raise ValueError(f"task experts exist for {', '.join(self.experts)}, not for {task!r} "
                             f"(the batch's 'task' names the benchmark)")
        return self.experts[task]

    def forward(self, x: Tensor, other: Tensor, mask: Tensor | Band | None, task: str | None = None,
                has_other: Tensor | None = None) -> Tensor:
        """has_other (N,) bool: rows whose counterpart exists; the others get no cross-modal term."""
        cm = self.cm_attn(x, other, mask)
        if has_other is not None:
            cm = torch.where(has_other[:, None, None], cm, 0.0)
        x = x + self.drop(cm) + self.drop(self.self_attn(x, x, mask))
        x = self.norm1(x)  # (N, T, D)
        return self.norm2(x + self.drop(self.feed_forward(task)(x)))


class TPM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scales = cfg.scales
        self.max_window = cfg.max_window
        self.task_T = dict(cfg.task_T)
        self.layers = nn.ModuleList(TPMLayer(cfg) for _ in cfg.scales)
        self.fuse = nn.Linear((len(cfg.scales) + 1) * cfg.d_model, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model)

    def plan(self, task: str | None) -> list[int]:
        """The layers a batch of `task` runs: those of scales below its T and the widest (0); all
        of them for a task without a T (no task, or one the model was not built with)."""
        T = self.task_T.get(task) if task is not None else None
        if T is None:
            return list(range(len(self.scales)))
        return [i for i, S in enumerate(self.scales) if S == 0 or S < T]

    def mask(self, T: int, S: int, valid: Tensor | None, device: torch.device) -> Tensor | Band | None:
        """Scale S's attention mask: a window (as a Band: blocked on long sequences) and the keys'
        validity; S = 0 is the whole sequence up to max_window."""
        S = S or self.max_window
        window = window_mask(T, S, device)
        if window is None:
            return None if valid is None else padding_mask(valid)
        return Band(T, S // 2, valid, device)

    def forward(self, a: Tensor, v: Tensor, valid: Tensor | None = None, task: str | None = None,
                visual_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """a, v (B, T, D); valid (B, T) bool, the real seconds (None: all); visual_valid (B,) bool,
        False where the clip has no picture (its audio takes no cross-modal term; None: all)."""
        B, T, _ = a.shape
        x = torch.cat([a, v], dim=0)  # (2B, T, D): audio and visual share each layer
        valid = None if valid is None else torch.cat([valid, valid], dim=0)  # (2B, T)
        has_other = None if visual_valid is None else torch.cat([visual_valid, torch.ones_like(visual_valid)])
        run = self.plan(task)
        outs = [x]
        for i in run:
            other = torch.cat([x[B:], x[:B]], dim=0)  # each modality's counterpart
            x = self.layers[i](x, other, self.mask(T, self.scales[i], valid, x.device), task, has_other)
            outs.append(x)
        if len(run) == len(self.layers):
            x = self.fuse(torch.cat(outs, dim=-1))  # (2B, T, D), eq. 4
        else:   # eq. 4 over the scales run: the input's and their column blocks of the one projection
            D = a.shape[-1]
            cols = torch.cat([torch.arange(D, device=x.device)]
                             + [torch.arange((i + 1) * D, (i + 2) * D, device=x.device) for i in run])
            x = F.linear(torch.cat(outs, dim=-1), self.fuse.weight[:, cols], self.fuse.bias)
        x = self.norm(x)
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

    def forward(self, a_in: Tensor, a_tpm: Tensor, p: Tensor, visual_valid: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """a_in: projected input audio, a_tpm: TPM audio (B, T, D); p: patches (B, T, M, D);
        visual_valid (B,): False where there is no picture (the audio then takes nothing from the
        patches). Returns the audio and patch outputs and the patches after self-attention alone
        (eq. 5), which hold no audio."""
        B, T, M, D = p.shape
        p = p.reshape(B * T, M, D)
        p_hat = self.norm_p1(p + self.drop(self.patch_attn(p, p)))  # (BT, M, D)
        audio = torch.cat([a_in.reshape(B * T, 1, D), self.null.expand(B * T, 1, D)], dim=1)
        p_til = self.norm_p2(p_hat + self.drop(self.audio_guided(p_hat, audio)))  # (BT, M, D)
        a = a_tpm.reshape(B * T, 1, D)
        from_patches = self.patch_guided(a, p_hat)  # (BT, 1, D)
        if visual_valid is not None:
            from_patches = torch.where(visual_valid.repeat_interleave(T)[:, None, None], from_patches, 0.0)
        a_til = self.norm_a(a + self.drop(from_patches))  # (BT, 1, D)
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
        return (N * F.softmax(sim.float(), dim=-1)).to(keys.dtype)   # x N before the cast, as below
    w = F.softmax(sim.float().masked_fill(~valid, float("-inf")), dim=-1)
    return (valid.sum(-1, keepdim=True) * w).to(keys.dtype)


class TPGL(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.key_tpm = nn.Linear(cfg.d_model, cfg.d_model)
        self.key_spm = nn.Linear(cfg.d_model, cfg.d_model)

    def gate_tpm(self, q: Tensor, a: Tensor, v: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """valid (B, 2T): the real tokens, audio then visual (None: all); the softmax runs over them."""
        T = a.shape[1]
        f = torch.cat([a, v], dim=1)  # (B, 2T, D), eq. 7
        w = prompt_gate(q, F.relu(self.key_tpm(f)), valid)  # (B, 2T)
        f = w[..., None] * f  # eq. 9
        return f[:, :T], f[:, T:]

    def gate_spm(self, q: Tensor, a: Tensor, p: Tensor, visual_valid: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
        """visual_valid (B,): where False, the frame's gate runs over its audio token alone."""
        f = torch.cat([a[:, :, None], p], dim=2)  # (B, T, M+1, D), eq. 7
        valid = None
        if visual_valid is not None:
            B, T, M = p.shape[:3]
            valid = torch.cat([visual_valid.new_ones(B, T, 1), visual_valid[:, None, None].expand(B, T, M)], dim=2)
        w = prompt_gate(q[:, None], F.relu(self.key_spm(f)), valid)  # (B, T, M+1)
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
        """(B, 3T + T*M) bool, True at the memory tokens of real seconds, visual ones only where the
        clip has a picture (`visual_valid`); None where every token is real."""
        if "frame_valid" not in feats and "visual_valid" not in feats:
            return None
        a = feats["audio"]
        fv = feats.get("frame_valid")
        fv = a.new_ones(a.shape[:2], dtype=torch.bool) if fv is None else fv  # (B, T)
        vv = fv if "visual_valid" not in feats else fv & feats["visual_valid"][:, None]
        parts = [fv, vv]
        if "patches" in feats:
            parts += [fv, vv.repeat_interleave(feats["patches"].shape[2], dim=1)]  # patches (t, m) order
        return partial(torch.cat(parts, dim=1))

    def decode(self, queries: Tensor, feats: dict[str, Tensor]) -> Tensor:
        """Decoder states for task queries (B, L, D) over the memory -> (B, L, D). The memory
        tokens of padded seconds, and the visual ones of clips without a picture, are masked as keys."""
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
        clip; only the gates and the head run per sample. batch["task"] (a benchmark's name, as
        trainer/data.py puts it in every batch) picks the TPM scales and the task experts."""
        rows, task = batch.get("clip_rows"), batch.get("task")
        U, T = batch["audio"].shape[:2]
        device = batch["audio"].device

        def per_clip(x: Tensor) -> Tensor:   # (B,) per sample -> (U,) per clip: the samples of one clip agree
            return x if rows is None else x.new_zeros(U).scatter_reduce(0, rows, x, "amax")

        frame_valid = clip_valid = visual_valid = clip_visual = None
        if "length" in batch:   # (B,): the sample's real seconds; frame_valid (B, T) marks them
            length = batch["length"].to(device)
            seconds = torch.arange(T, device=device)
            frame_valid = seconds < length[:, None]
            clip_valid = partial(seconds < per_clip(length)[:, None])     # (U, T): what TPM masks
        if "visual_valid" in batch:   # (B,): False where the clip has no picture (audio only)
            visual_valid = batch["visual_valid"].to(device).bool()
            clip_visual = partial(per_clip(visual_valid.long()).bool())   # (U,)
            visual_valid = partial(visual_valid)
        # index_select, not x[rows]: x[rows]'s backward is index_put with accumulate, which ATen
        # runs with racing atomic float adds on several CPU threads, so two identical trainings
        # differed from step 10. index_select's backward (index_add) sums rows in index order.
        each = (lambda x: x) if rows is None else (lambda x: torch.index_select(x, 0, rows))
        a_in = self.embed["audio"](batch["audio"])          # (U, T, D)
        v_in = self.embed["visual"](batch["visual"])        # (U, T, D)
        a_t, v_t = self.tpm(a_in, v_in, clip_valid, task, clip_visual)  # 2 x (U, T, D)
        q = self.embed["prompt"](batch["prompt"])           # (B, D)
        tokens_valid = None      # (B, 2T): the real TPM tokens, audio then visual
        if frame_valid is not None or visual_valid is not None:
            fv = frame_valid if frame_valid is not None else torch.ones(q.shape[0], T, dtype=torch.bool, device=device)
            tokens_valid = partial(torch.cat([fv, fv if visual_valid is None else fv & visual_valid[:, None]], dim=1))
        a, v = self.tpgl.gate_tpm(q, each(a_t), each(v_t), tokens_valid)  # 2 x (B, T, D)
        feats = {"audio": a, "visual": v, "prompt": q}
        if frame_valid is not None:
            feats["frame_valid"] = frame_valid
        if "visual_valid" in batch:
            feats["visual_valid"] = batch["visual_valid"].to(device).bool()
        if spatial:
            p_in = self.embed["patches"](batch["patches"])  # (U, T, M, D)
            a_s, p, p_hat = self.spm(a_in, a_t, p_in, clip_visual)
            feats["spm_audio"], feats["patches"] = self.tpgl.gate_spm(q, each(a_s), each(p), visual_valid)  # (B, T, D), (B, T, M, D)
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
