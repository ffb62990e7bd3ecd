"""Scoring keeps the official arithmetic end to end (trainer/evaluate.py's VGG-SS and S4/MS3
scorers): VGG-SS boxes as the store holds them (float64; older float32 stores are flagged),
float64 predictions scored in float64, and 0 / 0 VGG-SS samples counted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipeline.store import FeatureStore
from trainer.evaluate import score

from .fake_stores import make_store


def test_vggss_boxes_reach_the_scorer_unrounded(tmp_path):
    fs = FeatureStore(make_store(tmp_path, "vggss"), mode="r+")
    idx = fs.split("test")
    boxes = np.zeros((len(fs), 2, 4))
    # 224 * 9/14 = 144 exactly in float64 (143 from float32), 224 * 25/32 = 175: the box holds
    # 144 * 175 = 25200 pixels, ciou 0.502 against an all-on map; from float32 143 * 175 = 25025,
    # ciou 0.499, which fails the 0.5 cut
    boxes[:, 0] = [0.0, 0.0, 9 / 14, 25 / 32]
    fs.put("boxes", boxes)
    fs.put("box_count", np.ones(len(fs), np.int8))
    heat = np.zeros((len(idx), 2, 2), np.float32)   # constant 0: every pixel on
    heat[0] = -1.0                                   # sample 0: no pixel on, ciou 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = score("vggss", {"heatmap": heat, "clip_index": idx}, fs)
    assert r["metrics"]["ciou"] == pytest.approx(5 / 6) and r["undefined"] == 0
    fs.put("boxes", boxes.astype(np.float32))        # a store made before boxes were float64
    with pytest.warns(UserWarning, match=f"{fs.path}.*float32.*avu extract --dataset vggss"):
        old = score("vggss", {"heatmap": heat, "clip_index": idx}, fs)
    assert old["metrics"]["ciou"] == 0.0             # what such a store scores, flagged


def test_vggss_empty_against_empty_is_counted(tmp_path):
    fs = FeatureStore(make_store(tmp_path, "vggss"), mode="r+")
    idx = fs.split("test")
    boxes = np.zeros((len(fs), 2, 4))
    boxes[:, 0] = [0.0, 0.0, 0.5, 1.0]
    boxes[idx[:2], 0] = [0.3, 0.3, 0.3, 0.9]         # no area: no ground-truth pixel
    fs.put("boxes", boxes)
    heat = np.zeros((len(idx), 224, 224), np.float32)
    heat[:, :, :112] = 1.0                            # left half on: ciou 1 against the left half
    heat[0] = -1.0                                    # empty prediction on an empty box: 0 / 0
    r = score("vggss", {"heatmap": heat, "clip_index": idx}, fs)
    # sample 1 (all of the left half on, no box) scores 0; sample 0 is NaN and fails even x = 0
    assert r["undefined"] == 1
    assert r["metrics"]["ciou"] == pytest.approx(4 / 6)
    assert r["metrics"]["auc"] == pytest.approx(4 / 6 + 0.05 / 2 * (1 / 6))


def test_avs_float64_logits_are_scored_in_float64(tmp_path):
    fs = FeatureStore(make_store(tmp_path, "avs-s4"))
    idx = fs.split("test")
    masks = fs.read("masks", idx) > 0
    # 1e-9 where the object is: sigmoid > 0.5 in float64 (a perfect mask), exactly 0.5 in float32
    logits = np.where(masks, 1e-9, -10.0)
    r = score("avs-s4", {"mask_logits": logits, "clip_index": idx}, fs)
    assert r["metrics"]["miou"] == pytest.approx(1.0, abs=1e-6)
    r32 = score("avs-s4", {"mask_logits": logits.astype(np.float32), "clip_index": idx}, fs)
    assert r32["metrics"]["miou"] < 0.5
