"""MS-STPM, the token interface and the task heads on tiny random data (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trainer.attention as attention
from trainer.attention import attention_impl, get_attention_impl, window_mask
from trainer.model import AVUnified, ModelConfig, TPMLayer, default_scales
from trainer.tasks import HEADS as TASKS

D_CLIP, V, M, B = 24, 160, 16, 3
# variant -> task; "s4" and "avss" are the two modes of the "avs" head
VARIANTS = {"ave": "ave", "llp": "llp", "vggss": "vggss", "s4": "avs", "avss": "avs", "avqa": "avqa"}
MODE = {"s4": {"mode": "binary"}, "avss": {"mode": "classes"}}   # the avs head's keyword
VALID_IDS = {"ave": torch.arange(0, 29), "llp": torch.arange(29, 54), "vggss": None, "s4": None,
             "avss": torch.arange(60, 131), "avqa": torch.arange(140, 150)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, d_ff=32, T=10, visual_dim=D_CLIP, n_patches=M,
                mask_channels=16, dropout=0.0)
    return ModelConfig(**{**base, **kw})


def build(cfg: ModelConfig, seed: int = 0) -> AVUnified:
    torch.manual_seed(seed)
    return AVUnified(cfg, {name: task.Head(cfg) for name, task in TASKS.items()})


def box_masks(g: torch.Generator, b: int, T: int, size: int, classes: int) -> torch.Tensor:
    """One random rectangle of a random class (>= 1) per frame on background 0: (b, T, size, size)."""
    masks = torch.zeros(b, T, size, size, dtype=torch.long)
    for i in range(b):
        for t in range(T):
            y0, x0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
            h, w = torch.randint(2, size // 2, (2,), generator=g).tolist()
            masks[i, t, y0:y0 + h, x0:x0 + w] = torch.randint(1, classes, (1,), generator=g).item()
    return masks


def make_batch(variant: str, T: int = 5, b: int = B, seed: int = 0, m: int = M,
               d: int = D_CLIP) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {"audio": torch.randn(b, T, 128, generator=g), "visual": torch.randn(b, T, d, generator=g),
             "patches": torch.randn(b, T, m, d, generator=g), "prompt": torch.randn(b, d, generator=g)}
    if variant == "ave":
        batch["labels"] = torch.randint(0, 29, (b, T), generator=g)
    elif variant == "llp":
        del batch["patches"]  # the LLP head skips SPM, so patches need not be loaded
        batch["video_labels"] = (torch.rand(b, 25, generator=g) < 0.2).float()
    elif variant == "s4":
        batch["masks"] = box_masks(g, b, T, 16, 2).float()
        batch["mask_valid"] = torch.zeros(b, T, dtype=torch.bool)
        batch["mask_valid"][:, 0] = True  # S4 training: only the first frame is annotated
    elif variant == "avss":
        batch["masks"] = box_masks(g, b, T, 16, 71)
        batch["mask_valid"] = torch.ones(b, T, dtype=torch.bool)
        batch["mask_valid"][0, T // 2:] = False  # a padded clip
    elif variant == "avqa":
        batch["answer"] = torch.randint(0, 10, (b,), generator=g)
    return batch


def vocab(seed: int = 1, d: int = D_CLIP) -> torch.Tensor:
    return torch.randn(V, d, generator=torch.Generator().manual_seed(seed))


def run(model: AVUnified, variant: str, batch: dict) -> tuple[dict, torch.Tensor]:
    out = model(batch, VARIANTS[variant], vocab(d=batch["prompt"].shape[-1]), VALID_IDS[variant],
                **MODE.get(variant, {}))
    return out, TASKS[VARIANTS[variant]].loss(out, batch)


# ---------------------------------------------------------------------------------- attention

@pytest.mark.parametrize("T", [5, 10, 60])
def test_window_mask_matches_hand_built(T):
    for S in (0, 2, 4, 6, 8, 16, 32, 64, 128):
        mask = window_mask(T, S, torch.device("cpu"))
        if S == 0 or S // 2 >= T - 1:
            assert mask is None  # full window: no mask, so flash stays eligible
            continue
        hand = torch.tensor([[abs(i - j) <= S // 2 for j in range(T)] for i in range(T)])
        assert torch.equal(mask, hand)
        assert window_mask(T, S, torch.device("cpu")) is mask  # cached


@pytest.mark.parametrize("T", [5, 10, 60])
def test_tpm_layers_get_their_scale_masks(T, monkeypatch):
    cfg = tiny_config(T=60)
    assert cfg.scales == default_scales(60) == (2, 4, 8, 16, 32, 0)
    model = build(cfg)
    seen = []
    inner = attention.attend
    monkeypatch.setattr(attention, "attend", lambda q, k, v, mask=None, dropout_p=0.0:
                        seen.append(mask.dense() if isinstance(mask, attention.Band) else mask)
                        or inner(q, k, v, mask, dropout_p))
    model.tpm(torch.randn(2, T, 32), torch.randn(2, T, 32))
    assert len(seen) == 2 * len(cfg.scales)  # cross-modal + self attention per layer
    for layer, S in enumerate(cfg.scales):
        hand = torch.tensor([[abs(i - j) <= S // 2 for j in range(T)] for i in range(T)])
        for mask in seen[2 * layer: 2 * layer + 2]:
            if S == 0 or S // 2 >= T - 1:
                assert mask is None
            else:
                assert mask is not None and torch.equal(mask, hand), (T, S)


@pytest.mark.parametrize("S", [2, 4])
def test_windowed_layer_is_local(S):
    """True in the mask means "may attend": a change at j reaches only |i - j| <= S / 2."""
    torch.manual_seed(0)
    layer = TPMLayer(tiny_config()).eval()
    T, j = 10, 6
    x, other = torch.randn(1, T, 32), torch.randn(1, T, 32)
    y = layer(x, other, window_mask(T, S, x.device))
    other2 = other.clone()
    other2[0, j] += 1.0
    changed = (layer(x, other2, window_mask(T, S, x.device)) - y).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [abs(i - j) <= S // 2 for i in range(T)]


def test_switch_selects_kernel(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    model = build(tiny_config())
    batch = make_batch("ave")
    assert get_attention_impl() == "fused"
    run(model, "ave", batch)
    n_fused = len(calls)
    with attention_impl("naive"):
        run(model, "ave", batch)
    assert n_fused > 0 and len(calls) == n_fused and get_attention_impl() == "fused"


def assert_fused_matches_naive(model, variant: str, batch: dict, min_grads: int, **tol) -> None:
    """Outputs and gradients of one batch agree between the fused and the naive attention."""
    results = {}
    for impl in ("fused", "naive"):
        model.zero_grad()
        with attention_impl(impl):
            out, loss = run(model, variant, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[impl] = ({k: v.detach() for k, v in out.items()}, grads)
    (out_f, g_f), (out_n, g_n) = results["fused"], results["naive"]
    for k in out_f:
        torch.testing.assert_close(out_f[k], out_n[k], **tol, msg=k)
    assert g_f.keys() == g_n.keys() and len(g_f) > min_grads
    for n in g_f:
        torch.testing.assert_close(g_f[n], g_n[n], **tol, msg=n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_matches_naive(variant):
    assert_fused_matches_naive(build(tiny_config()), variant, make_batch(variant), 8 if variant == "vggss" else 20,
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- heads

@pytest.mark.parametrize("T", [5, 10, 60])
def test_decoded_shapes(T):
    model = build(tiny_config()).eval()
    g = 4
    expect = {"ave": {"labels": (2, T)},
              "llp": {"global_prob": (2, 25), "frame_prob_a": (2, T, 25), "frame_prob_v": (2, T, 25)},
              "vggss": {"heatmap": (2, g, g)},
              "s4": {"mask_logits": (2, T, 32, 32)},
              "avss": {"mask_classes": (2, T, 32, 32)},
              "avqa": {"answer": (2,)}}
    with torch.no_grad():
        for variant, shapes in expect.items():
            out, loss = run(model, variant, make_batch(variant, T=T, b=2))
            task = TASKS[VARIANTS[variant]]
            pred = task.decode(out, size=32) if task is TASKS["avs"] else task.decode(out)
            assert {k: tuple(v.shape) for k, v in pred.items()} == shapes
            assert torch.isfinite(loss)
    assert out["patches"].shape == (2, T, M, 32) and out["audio"].shape == (2, T, 32)


@pytest.mark.parametrize("grid,width", [(7, 40), (2, 16)])
def test_any_grid_and_feature_width(grid, width):
    model = build(tiny_config(n_patches=grid * grid, visual_dim=width, d_model=48, n_heads=3)).eval()
    with torch.no_grad():
        for variant in VARIANTS:
            out, loss = run(model, variant, make_batch(variant, T=10, m=grid * grid, d=width))
            assert torch.isfinite(loss)
            if variant == "vggss":
                assert TASKS["vggss"].decode(out)["heatmap"].shape == (B, grid, grid)
    assert out["patches"].shape == (B, 10, grid * grid, 48)


def test_vggss_heatmap_reads_the_unimodal_streams_of_the_middle_second():
    """The heatmap compares the middle second's audio with that frame's patches before either
    has seen the other modality: the visual [CLS], the prompt, the other seconds and the other
    clips of the batch change nothing; the middle second's audio and patches do."""
    model = build(tiny_config()).eval()
    batch = make_batch("vggss", T=10)
    heat = lambda b: model(b, "vggss")["heatmap"]  # noqa: E731
    with torch.no_grad():
        base = heat(batch)
        for name, change in [("visual", lambda x: x.normal_()), ("prompt", lambda x: x.normal_()),
                             ("audio", lambda x: x[:, :5].normal_()), ("patches", lambda x: x[:, 6:].normal_())]:
            b = {k: v.clone() for k, v in batch.items()}
            change(b[name])
            assert torch.allclose(heat(b), base, atol=1e-6), name
        b = {k: v.clone() for k, v in batch.items()}
        b["audio"][1:] = torch.randn_like(b["audio"][1:])        # the other clips
        assert torch.allclose(heat(b)[0], base[0], atol=1e-6)
        for name in ("audio", "patches"):
            b = {k: v.clone() for k, v in batch.items()}
            b[name][:, 5].normal_()
            assert not torch.allclose(heat(b), base, atol=1e-3), name


def test_token_logits_are_constrained_to_valid_ids():
    model = build(tiny_config())
    for variant in ("ave", "avqa"):
        out, _ = run(model, variant, make_batch(variant))
        ids = VALID_IDS[variant]
        tok = out["token_logits"]
        outside = torch.ones(V, dtype=torch.bool)
        outside[ids] = False
        assert torch.isneginf(tok[..., outside]).all() and torch.isfinite(tok[..., ids]).all()
        assert torch.equal(out["class_logits"], tok[..., ids])
        pred = TASKS[variant].decode(out)["labels" if variant == "ave" else "answer"]
        assert torch.equal(ids[pred], tok.argmax(-1))  # class index <-> token id


@pytest.mark.parametrize("variant", ["s4", "avss"])
def test_avs_loss_in_chunks_equals_one_shot(variant):
    """The chunked, recomputed loss (bounded memory) gives the plain loss and its gradients."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    K, size = (1, 24) if variant == "s4" else (71, 24)
    logits = torch.randn(3, 5, K, 8, 8, requires_grad=True)
    masks = torch.randint(0, 2 if K == 1 else K, (3, 5, size, size))
    valid = torch.rand(3, 5) < 0.7
    batch = {"masks": masks, "mask_valid": valid}
    x = F.interpolate(logits[valid], size=(size, size), mode="bilinear", align_corners=False)
    m = masks[valid]
    ref = (F.binary_cross_entropy_with_logits(x[:, 0], (m != 0).to(x.dtype)) if K == 1
           else F.cross_entropy(x, m))
    (g_ref,) = torch.autograd.grad(ref, logits)
    loss = TASKS["avs"].loss({"mask_logits": logits}, batch, chunk_pixels=2 * K * size * size)  # 2 frames a chunk
    (g,) = torch.autograd.grad(loss, logits)
    assert torch.allclose(loss, ref, rtol=1e-5) and torch.allclose(g, g_ref, rtol=1e-4, atol=1e-9)


def test_avs_loss_ignores_invalid_frames():
    model = build(tiny_config())
    batch = make_batch("s4")
    out, loss = run(model, "s4", batch)
    batch["masks"][:, 1:] = 1 - batch["masks"][:, 1:]  # change only unannotated frames
    assert torch.equal(TASKS["avs"].loss(out, batch), loss)


BACKBONE = ("embed.", "tpm.", "spm.", "tpgl.")
SPATIAL = ("embed.", "tpm.", "spm.", "tpgl.key_spm.")
AVS_TRUNK = ("heads.avs.patch.", "heads.avs.audio.", "heads.avs.up.")
USES = {  # parameter name prefixes each variant must train, and nothing else
    "ave": BACKBONE + ("tokens.", "heads.ave."),
    "llp": ("embed.audio.", "embed.visual.", "embed.prompt.", "tpm.", "tpgl.key_tpm.",
            "tokens.vocab_proj.", "tokens.logit_scale", "heads.llp."),
    "vggss": ("embed.audio.", "embed.patches.", "spm.patch_attn.", "spm.norm_p1.", "heads.vggss."),
    # the mask heads read only the SPM outputs: SPM takes the TPM audio before the gate (eq. 6),
    # so the TPM gate's keys get no gradient from them
    "s4": SPATIAL + AVS_TRUNK + ("heads.avs.binary.",),
    "avss": SPATIAL + AVS_TRUNK + ("tokens.vocab_proj.", "tokens.logit_scale", "heads.avs.classes."),
    "avqa": BACKBONE + ("tokens.", "heads.avqa."),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_exactly_the_used_params(variant):
    """Every parameter under the variant's prefixes gets a nonzero gradient; no other does."""
    model = build(tiny_config())
    _, loss = run(model, variant, make_batch(variant))
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if n.startswith(USES[variant])}
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert len(expected) >= (10 if variant == "vggss" else 20) and any(n.startswith("heads.") for n in expected)
    assert expected - reached == set(), "no gradient"
    assert reached - expected == set(), "unexpected gradient"


@pytest.mark.parametrize("variant", VARIANTS)
def test_overfits_tiny_batch(variant):
    model = build(tiny_config())
    batch = make_batch(variant, b=4)
    floor = 0.0
    if variant == "llp":  # the smoothed visual target leaves an entropy floor
        y = 0.9 * batch["video_labels"] + 0.05
        floor = float(-(y * y.log() + (1 - y) * (1 - y).log()).mean())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        _, loss = run(model, variant, batch)
        if loss.item() - floor < 0.05:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() - floor < 0.05, (variant, loss.item(), floor)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_forward(variant):
    model = build(tiny_config()).eval()
    batch = make_batch(variant, T=10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, loss = run(model, variant, batch)
        pred = TASKS[VARIANTS[variant]].decode(out)
    assert out["audio"].dtype == torch.bfloat16
    assert torch.isfinite(loss) and all(torch.isfinite(v.float()).all() for v in pred.values())


# ---------------------------------------------------------------------------------- shared clips

def test_questions_of_one_video_share_the_backbone_and_match_running_each_alone():
    """Features one row per clip and `clip_rows` (MUSIC-AVQA: questions of one video, as the
    reader gives them) run TPM + SPM once per clip. Reference: the same batch with every
    question's features in its own row. Outputs and gradients agree; SPM sees 2 rows, not 5."""
    per_clip = make_batch("avqa", T=6, b=2)
    rows = torch.tensor([0, 1, 0, 0, 1])
    questions = make_batch("avqa", T=6, b=5, seed=1)             # prompts and answers per question
    shared = {**per_clip, "prompt": questions["prompt"], "answer": questions["answer"], "clip_rows": rows}
    alone = {**shared, **{k: per_clip[k][rows] for k in ("audio", "visual", "patches")}}
    del alone["clip_rows"]
    seen = []
    model = build(tiny_config())
    model.spm.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    shared_out, shared_loss = run(model, "avqa", shared)
    shared_loss.backward()
    shared_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    alone_out, alone_loss = run(model, "avqa", alone)
    alone_loss.backward()
    assert seen == [2, 5]
    torch.testing.assert_close(shared_out["class_logits"], alone_out["class_logits"], rtol=1e-5, atol=1e-5)
    assert len(shared_grads) > 20
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(shared_grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_backward_through_clip_rows_uses_no_racing_atomic_adds():
    """Two identical CPU trainings differed from step 10 (MUSIC-AVQA) because the backward of
    `x[clip_rows]` is index_put with accumulate, which ATen runs in parallel with atomic float
    adds (order set by the thread race). The expansion must back-propagate through index_add
    (index_select's backward), which sums repeated rows in index order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops = []

    class Record(TorchDispatchMode):
        """(op name, True where it is index_put adding several values into one place)."""
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name, racing = func.overloadpacket.__name__, False
            if name.startswith("index_put") and len(args) > 3 and args[3]:
                racing = any(i is not None and i.numel() > i.unique().numel() for i in args[1])
            ops.append((name, racing))
            return func(*args, **(kwargs or {}))

    batch = {**make_batch("avqa", T=6, b=2), "clip_rows": torch.tensor([0, 1, 0, 0, 1])}
    batch.update({k: v for k, v in make_batch("avqa", T=6, b=5, seed=1).items() if k in ("prompt", "answer")})
    model = build(tiny_config())
    _, loss = run(model, "avqa", batch)
    with Record():
        loss.backward()
    names = [n for n, _ in ops]
    assert "index_add" in names or "index_add_" in names
    assert not [name for name, racing in ops if racing]


# ---------------------------------------------------------------------------------- padded frames

@pytest.mark.parametrize("variant", ["s4", "avss"])
def test_padded_frames_predict_background(variant):
    """Frames past the clip's length decode to background (AVSS: class 0 everywhere; binary:
    probability ~0 at every F-score threshold); the real frames are what the clip cut to its
    real length gives without a length (tests/test_padding.py covers every head)."""
    model = build(tiny_config()).eval()
    batch = make_batch(variant, T=6, b=3)
    length = torch.tensor([6, 3, 1])
    with torch.no_grad():
        padded, _ = run(model, variant, {**batch, "length": length})
        alone = [run(model, variant, {k: v[i:i + 1, :n] if k in ("audio", "visual", "patches", "masks", "mask_valid")
                                      else v[i:i + 1] for k, v in batch.items()})[0]
                 for i, n in enumerate(length.tolist())]
    dec = TASKS["avs"].decode(padded, size=16)
    for i, n in enumerate(length.tolist()):
        torch.testing.assert_close(padded["mask_logits"][i, :n], alone[i]["mask_logits"][0], rtol=1e-5, atol=1e-5)
        if variant == "avss":
            assert (dec["mask_classes"][i, n:] == 0).all()
            assert (dec["mask_classes"][i, :n] != 0).any()       # the real frames are not blanked
        else:
            assert (torch.sigmoid(dec["mask_logits"][i, n:]) < 1e-6).all()
