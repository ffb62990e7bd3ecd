"""TPM scales per benchmark, the capped widest window, no mask where nothing is masked, task experts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trainer.attention as attention
import trainer.model as model_module
from tests.test_model import VARIANTS, build, make_batch, run, tiny_config
from tests.test_padding import pad_to
from trainer.model import default_scales

pytestmark = pytest.mark.usefixtures("one_torch_thread")

JOINT = {"ave": 10, "llp": 10, "music-avqa": 60}


def test_each_benchmark_runs_the_scales_of_its_own_clips():
    assert default_scales(60) == (2, 4, 8, 16, 32, 0) and default_scales(2400, 128) == (2, 4, 8, 16, 32, 64, 0)
    assert default_scales(60, 128) == default_scales(60)      # the cap leaves today's clips alone
    tpm = build(tiny_config(T=2400, task_T={**JOINT, "unav100": 2400})).tpm
    scales = lambda task: tuple(tpm.scales[i] for i in tpm.plan(task))  # noqa: E731
    assert scales("ave") == default_scales(10) == (2, 4, 8, 0)
    assert scales("music-avqa") == default_scales(60)
    assert scales("unav100") == scales(None) == scales("unknown") == tpm.scales


def test_a_short_benchmark_computes_what_a_model_built_for_its_clips_computes():
    """AVE in a joint model built for 60 s clips equals a model built for 10 s clips alone
    (scales 2, 4, 8, 0) given the same weights: its layers and their blocks of eq. 4."""
    joint = build(tiny_config(T=60, task_T=JOINT)).eval()
    alone = build(tiny_config(T=10), seed=1).eval()
    keep = joint.tpm.plan("ave")                                   # layers of 2, 4, 8, 0
    state = joint.state_dict()
    for j, i in enumerate(keep):
        for k, v in joint.tpm.layers[i].state_dict().items():
            state[f"tpm.layers.{j}.{k}"] = v
    for i in range(len(keep), len(joint.tpm.layers)):
        state = {k: v for k, v in state.items() if not k.startswith(f"tpm.layers.{i}.")}
    D = 32
    cols = torch.cat([torch.arange(D)] + [torch.arange((i + 1) * D, (i + 2) * D) for i in keep])
    state["tpm.fuse.weight"] = joint.tpm.fuse.weight[:, cols]
    alone.load_state_dict(state)
    batch = pad_to(make_batch("ave", T=10, b=2), 10, [10, 7], seed=1)
    with torch.no_grad():
        out_joint, _ = run(joint, "ave", {**batch, "task": "ave"})
        out_alone, _ = run(alone, "ave", batch)
        out_all, _ = run(joint, "ave", batch)                      # no task: every layer
    torch.testing.assert_close(out_joint["class_logits"], out_alone["class_logits"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out_all["class_logits"], out_alone["class_logits"], atol=1e-3)


def test_layers_a_benchmark_skips_get_no_gradient():
    model = build(tiny_config(T=60, task_T=JOINT))
    _, loss = run(model, "ave", {**make_batch("ave", T=10), "task": "ave"})
    loss.backward()
    for i, S in enumerate(model.tpm.scales):
        grad = model.tpm.layers[i].self_attn.q.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == (S in (2, 4, 8, 0)), S
    fuse = model.tpm.fuse.weight.grad.abs().sum(0).view(len(model.tpm.scales) + 1, 32).sum(1) > 0
    assert fuse.tolist() == [True, True, True, True, False, False, True]   # input, 2, 4, 8, (16, 32), 0


def test_long_clips_get_a_capped_window_not_a_global_one(monkeypatch):
    """A 300-step clip (a dense benchmark's) under max_window 64: every layer's attention is a
    window (a Band), the widest of radius 32, and runs blocked; none is a (T, T) matrix."""
    seen = []
    inner = attention.attend
    monkeypatch.setattr(attention, "attend", lambda q, k, v, mask=None, dropout_p=0.0:
                        seen.append(mask) or inner(q, k, v, mask, dropout_p))
    model = build(tiny_config(T=300, max_window=64, task_T={"unav100": 300})).eval()
    assert model.tpm.scales == (2, 4, 8, 16, 32, 0)
    with torch.no_grad():
        model.tpm(torch.randn(1, 300, 32), torch.randn(1, 300, 32), task="unav100")
    assert all(isinstance(m, attention.Band) for m in seen)
    assert [m.radius for m in seen[::2]] == [1, 2, 4, 8, 16, 32]


# ---------------------------------------------------------------------------------- no mask, flash

@pytest.mark.parametrize("variant", VARIANTS)
def test_unpadded_batches_pass_no_mask_and_equal_the_masked_computation(variant, monkeypatch):
    """Every length = T: SDPA gets no mask where only padding would mask (the widest scale, the
    decoder), and outputs, loss and gradients equal bit for bit those of the masked computation
    (`partial` made to pass every mask on)."""
    masks = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, attn_mask=None, **k: masks.append(attn_mask) or sdpa(*a, attn_mask=attn_mask, **k))
    batch = {**make_batch(variant, T=10), "length": torch.full((3,), 10)}
    model = build(tiny_config(T=10, dropout=0.1))

    def step() -> tuple[dict, dict]:
        torch.manual_seed(0)
        model.zero_grad()
        out, loss = run(model, variant, batch)
        loss.backward()
        return {k: v.detach() for k, v in out.items()}, {n: p.grad for n, p in model.named_parameters()
                                                        if p.grad is not None}
    out, grads = step()
    assert None in masks
    assert not any(m is not None and m.dim() == 4 and m.shape[2] == 1 for m in masks)  # no padding-only mask
    monkeypatch.setattr(model_module, "partial", lambda valid: valid)
    masks.clear()
    out_masked, grads_masked = step()
    if variant != "vggss":   # VGG-SS reads the unimodal streams: no attention over time at all
        assert any(m is not None and m.dim() == 4 for m in masks)
    for k in out:
        assert torch.equal(out[k], out_masked[k]), k
    assert grads.keys() == grads_masked.keys()
    for n in grads:
        assert torch.equal(grads[n], grads_masked[n]), n


# ---------------------------------------------------------------------------------- task experts

def test_task_experts_are_per_task_ffns():
    cfg = tiny_config(T=60, task_T=JOINT, task_experts=True)
    model = build(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert not any(".ffn." in n for n in names if n.startswith("tpm."))
    assert {n.split(".")[4] for n in names if ".experts." in n} == set(JOINT)
    batch = make_batch("ave", T=10)
    out_ave, loss = run(model, "ave", {**batch, "task": "ave"})
    out_llp, _ = run(model, "ave", {**batch, "task": "llp"})   # the same scales (10 s), another expert
    assert not torch.allclose(out_ave["class_logits"], out_llp["class_logits"], atol=1e-3)
    loss.backward()
    reached = {n.split(".")[4] for n, p in model.named_parameters()
               if ".experts." in n and p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"ave"}
    with pytest.raises(ValueError, match="not for 'vggss'"):
        run(model, "ave", {**batch, "task": "vggss"})
    with pytest.raises(AssertionError, match="task_T"):
        tiny_config(task_experts=True)


def test_experts_off_is_the_model_without_them():
    """Off (the default): the same parameters, the same initial values, the same outputs as a
    model built without task_T; the task name changes nothing where the scales are the same."""
    plain, named = build(tiny_config(T=10)), build(tiny_config(T=10, task_T={"ave": 10, "llp": 10}))
    assert plain.state_dict().keys() == named.state_dict().keys()
    assert all(torch.equal(v, named.state_dict()[k]) for k, v in plain.state_dict().items())
    batch = make_batch("ave", T=10)
    with torch.no_grad():
        a = run(plain, "ave", batch)[0]["class_logits"]
        for task in ("ave", "llp"):
            assert torch.equal(run(named, "ave", {**batch, "task": task})[0]["class_logits"], a)


def test_training_builds_each_store_s_scales_and_experts(tmp_path):
    """train.py: task_T is each store's T, the setting task_experts reaches the model, and a run
    with experts trains (the batch's task picks the expert: a missing one would raise)."""
    from tests.fake_stores import make_stores
    from trainer import train as T
    from trainer.config import TrainConfig
    from trainer.data import open_tasks
    from trainer.checkpoint import load

    template = make_stores(tmp_path / "stores", tasks=("ave", "music-avqa"), n=8)
    cfg = TrainConfig(tasks="ave,music-avqa", stores=template, max_steps=2, batch_size=4, d_model=32, n_heads=2,
                      d_ff=32, mask_channels=16, workers=0, eval_every=10 ** 6, task_experts=True)
    mcfg = T.model_config(cfg, open_tasks(["ave", "music-avqa"], template))
    assert mcfg.task_T == {"ave": 10, "music-avqa": 12} and mcfg.task_experts and mcfg.T == 12
    run = T.train(cfg, tmp_path / "run", quiet=True)
    state = load(run / "checkpoints" / "last.pt")
    assert state["model_config"]["task_T"] == mcfg.task_T
    assert any(".experts.music-avqa." in k for k in state["model"])
