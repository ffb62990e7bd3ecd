"""`avu predict` on a tiny run: fake stores (tests/fake_stores.py) that record the provenance of
the tiny random CLIP and random VGGish, a run trained on them for a few steps, and two videos:
the real AVE sample (10 s) and a generated 25 s clip. Checks the JSON against its schema, times
covering the whole video, the window stitching at the seams, --ask, and refused weight files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app, train_config
from pipeline.config import as_dict
from pipeline.encoders import WeightsError
from pipeline.extract import resolve_weights
from pipeline.store import FeatureStore
from pipeline.timecode import write_clip
from pipeline.vocab import CLASSES, TASKS
from trainer import predict as P
from trainer.predict_schema import SCHEMA

from .conftest import SAMPLES, need, tiny_config
from .fake_stores import make_stores

pytestmark = pytest.mark.usefixtures("one_torch_thread")
READABLE = [t for t in TASKS if P.kind_of(P.BENCHMARKS[t]) is not None]   # the benchmarks predict reads: all ten
TINY = ["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "workers=0", "max_steps=3",
        "eval_every=1000", "log_every=1"]


def validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")   # a test dependency (pyproject.toml [test])
    jsonschema.validate(doc, SCHEMA)


def provenance(fs: FeatureStore, cfg) -> None:
    """What `avu extract` records, as if cfg (at the store's T) had made the store."""
    _, enc = resolve_weights(cfg, "cpu")
    T = int(fs.attrs["T"])
    fs.set_attrs(features={"T": T, "sample_rate": cfg.sample_rate, "clip_model": cfg.clip_model,
                           "patch_grid": cfg.patch_grid, "random_weights": cfg.random_weights,
                           "precision": cfg.precision, "encoders": enc},
                 config=as_dict(dataclasses.replace(cfg, T=T)), random_weights=cfg.random_weights)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run of all ten tasks on stores of the tiny CLIP's width (64) and patch grid (4); the
    stores of the benchmarks whose adapters make none (the dense ones) hold no patches."""
    from pipeline.datasets import ADAPTERS
    from trainer.train import train

    root = tmp_path_factory.mktemp("predict")
    no_patches = [t for t in READABLE if not ADAPTERS[t].patches]
    assert no_patches
    template = make_stores(root / "stores", READABLE, n=8, D=64, G=4, no_patches=no_patches)
    for t in READABLE:
        provenance(FeatureStore(template.format(task=t), mode="r+"), tiny_config())
    torch.manual_seed(0)
    out = root / "run"
    train(train_config(TINY, tasks=",".join(READABLE), stores=template), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def clip25(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "long25.mp4", 25.0, 25.0, size=(96, 64))


@pytest.fixture(scope="module")
def predicted(run, clip25, tmp_path_factory) -> tuple[Path, dict, P.Prepared]:
    """The 25 s clip predicted through the command line, with two questions."""
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(app, ["predict", str(run), str(clip25), "--out", str(out), "--device", "cpu",
                                      "--ask", "Is the violin playing?", "--ask", "How many instruments are sounding?"])
    assert result.exit_code == 0, result.output
    assert "RANDOM-WEIGHT" in result.output and "predictions.json" in result.output
    doc = json.loads((out / "long25" / "predictions.json").read_text())
    prep = P.prepare(run, asks=["Is the violin playing?"], device="cpu")
    return out / "long25", doc, prep


def test_windows_cover_every_step_once():
    for n, T in ((25, 10), (10, 10), (7, 10), (30, 10), (26, 5), (1, 5)):
        plan = P.windows(n, T)
        who = P.owner(plan, n)
        owned = np.concatenate([np.arange(first, stop) for _, stop, first in plan])
        assert owned.tolist() == list(range(n))                       # each step owned exactly once
        assert all(b - a == min(T, n) for a, b, _ in plan)             # every window full length
        assert all(plan[w][0] <= s < plan[w][1] for s, w in enumerate(who))
    assert P.windows(25, 10) == [(0, 10, 0), (10, 20, 10), (15, 25, 20)]


def test_json_validates_and_covers_the_whole_video(predicted):
    folder, doc, _ = predicted
    validate(doc)
    assert doc["random_weights"] and "RANDOM-WEIGHT" in doc["notice"]
    assert doc["video"]["steps"] == 25 and doc["video"]["duration"] == 25.0
    assert set(doc["tasks"]) == set(READABLE)
    for task, t in doc["tasks"].items():
        if task == "music-avqa":
            continue
        if t["kind"] == "dense":      # one window over the whole video at its own step (0.25 s: 100 steps)
            assert t["hop"] == 0.25 and t["steps"] == 100 and t["windows"] == [{"start": 0, "end": 25.0}]
            assert t["seconds"] == [] and len(t["detections"]) > 0
            for d in t["detections"]:
                assert 0 <= d["start"] <= d["end"] <= 25 and d["label"] in t["classes"]
                assert d["modality"] == P.BENCHMARKS[task].modality
            assert all(e["score"] >= P.DENSE_EVENT_SCORE for e in t["events"])
            assert not FeatureStore(folder / P.features_name(0.25)).has_patches   # as its stores: none
            continue
        starts = [s["start"] for s in t["seconds"]]
        ends = [s["end"] for s in t["seconds"]]
        assert starts == [float(k) for k in range(25)] and ends == [float(k + 1) for k in range(25)], task
        assert t["windows"][0]["start"] == 0 and t["windows"][-1]["end"] == 25.0
        for e in t["events"]:
            assert 0 <= e["start"] < e["end"] <= 25 and e["label"] in t["classes"]
    assert FeatureStore(folder / P.features_name(1.0)).has_patches
    # events are runs over the stitched steps: AVE's match its per-second labels exactly
    ave = doc["tasks"]["ave"]
    labels = [s["label"] for s in ave["seconds"]]
    for e in ave["events"]:
        assert all(labels[k] == e["label"] for k in range(int(e["start"]), int(e["end"])))
    assert len({len(s["heatmap"]) for s in doc["tasks"]["vggss"]["seconds"]}) == 1
    # overlay PNGs for every step of every spatial task, and the page
    for task in ("vggss", "avs-s4", "avs-ms3", "avss"):
        assert len(doc["files"]["overlays"][task]) == 25
        assert all((folder / p).is_file() for p in doc["files"]["overlays"][task])
    page = (folder / "index.html").read_text()
    assert "RANDOM-WEIGHT" in page and "<svg" in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_a_broken_document_fails_the_schema(predicted):
    _, doc, _ = predicted
    bad = json.loads(json.dumps(doc))
    bad["tasks"]["ave"]["seconds"][0]["score"] = 1.5
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_ask_answers_from_the_vocabulary(predicted):
    _, doc, _ = predicted
    qa = doc["tasks"]["music-avqa"]["questions"]
    assert [q["question"] for q in qa] == ["Is the violin playing?", "How many instruments are sounding?"]
    for q in qa:
        assert q["answer"] in CLASSES["music-avqa"] and len(q["top"]) == 3
        assert q["answer"] == q["top"][0]["label"]
        scores = [a["score"] for a in q["top"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        assert len(q["windows"]) == 3                                   # 25 s in windows of 12 steps


def _direct(prep: P.Prepared, task: str, feats: dict, a: int, b: int) -> dict:
    """The model on one window of the features, outside the stitching (the reference)."""
    ti, (model, state, _) = prep.tasks[task], prep.models[task]
    one = {n: x[a:b] for n, x in feats.items()}
    return P.collect(model, dataclasses.replace(ti, window=b - a), one, b - a, prep.device, state.get("feature_norm"))


def test_stitching_is_right_at_the_seams(predicted):
    folder, doc, prep = predicted
    feats, info = P.video_features(FeatureStore(folder / "features.zarr"))
    n = info["steps"]
    for task, key in (("ave", "probs"), ("llp", "prob_a"), ("avs-s4", "mask_logits"), ("avss", "mask_classes"),
                      ("vggss", "heatmap")):
        model, state, _ = prep.models[task]
        stitched = P.collect(model, prep.tasks[task], feats, n, prep.device, state.get("feature_norm"))[key]
        for a, b, first in P.windows(n, prep.tasks[task].window):
            ref = _direct(prep, task, feats, a, b)[key]
            np.testing.assert_allclose(stitched[first:b], ref[first - a:], rtol=1e-5, atol=1e-5, err_msg=task)   # batched vs one window: BLAS sums in another order
    # the last AVE window is [15, 25): steps 20-24 come from it, not from a padded [20, 25)
    model, state, _ = prep.models["ave"]
    short = _direct(prep, "ave", feats, 20, 25)["probs"]
    full = P.collect(model, prep.tasks["ave"], feats, n, prep.device, state.get("feature_norm"))["probs"]
    assert not np.allclose(full[20:], short)
    # and the JSON holds those stitched numbers
    probs = full[np.arange(n), full.argmax(-1)]
    assert [s["score"] for s in doc["tasks"]["ave"]["seconds"]] == [round(float(p), 4) for p in probs]


def test_ssl_heatmaps_of_every_step_match_the_head(predicted):
    _, _, prep = predicted
    model, state, _ = prep.models["vggss"]
    torch.manual_seed(1)
    batch = {"audio": torch.randn(2, 10, 128), "visual": torch.randn(2, 10, 64), "patches": torch.randn(2, 10, 16, 64),
             "prompt": torch.randn(2, 64)}
    with torch.no_grad():
        out = model(batch, "vggss")
        every = P.ssl_heatmaps(model.heads["vggss"], out["audio_in"], out["patches_visual"])
    torch.testing.assert_close(every[:, 5], out["heatmap"])


def test_the_real_sample_clip(run, tmp_path):
    video = need(SAMPLES / "ave" / "-67UNKFmRLk.mp4")
    prep = P.prepare(run, tasks=["ave", "llp", "avs-s4"], device="cpu")
    doc = P.predict_video(prep, video, tmp_path / "ave")
    validate(doc)
    assert doc["video"]["duration"] == 10.0 and set(doc["tasks"]) == {"ave", "llp", "avs-s4"}
    assert len(doc["tasks"]["avs-s4"]["windows"]) == 2 and len(doc["tasks"]["ave"]["windows"]) == 1
    assert "music-avqa: no --ask" in " ".join(P.prepare(run, device="cpu").warnings)


def test_a_changed_or_missing_weight_file_is_refused(tmp_path):
    clip_file, vgg_file = tmp_path / "tiny-clip.pt", tmp_path / "vggish.pth"
    from pipeline.extract import load_encoders

    clip, vggish = load_encoders(resolve_weights(tiny_config(), "cpu")[0])
    torch.save(clip.model.state_dict(), clip_file)
    torch.save(vggish.net.state_dict(), vgg_file)
    cfg = tiny_config(random_weights=False, clip_weights=str(clip_file), vggish_weights=str(vgg_file))
    fs_path = make_stores(tmp_path / "stores", ["ave"], n=4, D=64, G=4).format(task="ave")
    provenance(FeatureStore(fs_path, mode="r+"), cfg)
    fs = FeatureStore(fs_path)
    made = P.encoder_config(fs, device="cpu")                          # the very files: accepted
    assert made.clip_weights == str(clip_file) and not made.random_weights and made.T == 0
    expected = fs.attrs["features"]["encoders"]["clip"]["sha256"]
    data = bytearray(clip_file.read_bytes())
    data[-1] ^= 1
    clip_file.write_bytes(bytes(data))                                 # one bit changed
    with pytest.raises(WeightsError) as err:
        P.encoder_config(fs, device="cpu")
    assert str(clip_file) in str(err.value) and expected in str(err.value) and "clip_weights" in str(err.value)
    data[-1] ^= 1
    clip_file.write_bytes(bytes(data))                                 # restored
    with pytest.raises(WeightsError) as err:
        P.encoder_config(fs, vggish_weights=str(tmp_path / "elsewhere.pth"), device="cpu")
    assert "elsewhere.pth" in str(err.value) and "vggish_weights" in str(err.value)
    assert fs.attrs["features"]["encoders"]["vggish"]["sha256"] in str(err.value)
    # the files hold the seeded random encoders: the video's features from them are those
    video = write_clip(tmp_path / "three.mp4", 3.0)
    from_files = P.video_features(P.extract_video(video, tmp_path / "a", made))[0]
    from_seed = P.video_features(P.extract_video(video, tmp_path / "b", tiny_config(T=0, device="cpu")))[0]
    for name in from_files:
        np.testing.assert_array_equal(from_files[name], from_seed[name])


def said(result) -> str:
    return " ".join(result.output.split())


def test_clear_errors(run, tmp_path, clip25):
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "nothing.mp4"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no such video file" in said(result)
    result = runner.invoke(app, ["predict", str(run), str(clip25), "--tasks", "ave", "--ask", "Why?",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--ask needs a question-answering head (MUSIC-AVQA)" in said(result)
    bare = make_stores(tmp_path / "bare", ["ave"], n=4, D=64, G=4).format(task="ave")
    with pytest.raises(P.PredictError, match="no feature provenance"):
        P.encoder_config(FeatureStore(bare))
