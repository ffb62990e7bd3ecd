"""The dense adapters (UnAV-100, ActivityNet 1.3, DESED) on the REAL annotation files, with the
counts of SOURCES.md / dense.md; their malformed inputs; and their synthetic copies (`avu synth`)
parsed back with the planted events."""

import json
import math
import shutil

import numpy as np
import pytest

from pipeline import synth
from pipeline.datasets import ADAPTERS, class_prompts, load_dataset
from pipeline.datasets import activitynet, desed, unav100
from pipeline.datasets.common import Invalid, one_of
from pipeline.synth import LOOKS, SR, colour, dense_clip, generate, tone_hz
from pipeline.vocab import key

from .conftest import ANNOTATIONS, need
from .test_adapters_malformed import copy, fails


def _sizes(ds) -> dict[str, int]:
    return {s: len(ds.split(s)) for s in ds.split_names()}


def _events(clips) -> int:
    return sum(int((c.targets["segment_labels"] >= 0).sum()) for c in clips)


def _clip(ds, clip_id):
    return next(c for c in ds.clips if c.clip_id == clip_id)


def test_one_of_maps_a_key_after_folding_and_names_the_keys_otherwise():
    subset = one_of({"train": "train", "validation": "val"}, str.lower)
    assert (subset("Validation"), subset("TRAIN")) == ("val", "train")
    with pytest.raises(Invalid, match="^expected one of train, validation$"):
        subset("dev")
    with pytest.raises(Invalid, match="^not one of ours$"):
        one_of({"Cat": 0}, message="not one of ours")("cat")        # no fold: case counts


def test_the_dense_adapters_are_any_length_at_quarter_second_steps_with_class_templates():
    for name, template in (("unav100", "An audio visual event of {}."), ("activitynet", "A visual event of {}."),
                           ("desed", "A sound event of {}.")):
        a = ADAPTERS[name]
        assert (a.T, a.hop, a.class_template) == (0, 0.25, template), name
    assert class_prompts("desed", desed.CLASSES)[0] == "A sound event of Alarm bell ringing."
    assert class_prompts("ave", ["Bark"]) == [] and len(activitynet.CLASSES) == len(set(activitynet.CLASSES)) == 200


# ----------------------------------------------------------------------------- UnAV-100
def test_unav100_videos_events_classes_and_targets():
    folder = need(ANNOTATIONS / "unav100")
    ds = load_dataset("unav100", folder)
    assert len(ds.clips) == 10790 and _sizes(ds) == {"train": 6489, "val": 2134, "test": 2167} and ds.T == 0
    assert [_events(ds.split(s)) for s in ("train", "val", "test")] == [18123, 6036, 5900]
    assert ds.classes == unav100.CLASSES and len(ds.classes) == 100 and ds.classes[0] == "man speaking"
    for s in ("train", "val", "test"):                     # all 100 classes in every split
        labels = np.concatenate([c.targets["segment_labels"] for c in ds.split(s)])
        assert set(labels[labels >= 0].tolist()) == set(range(100)), s
    assert ds.clips[0].targets["segments"].shape == (23, 2)   # E = the most events in one video
    durations = np.array([c.targets["duration"] for c in ds.clips])
    assert durations.min() == 10 and durations.max() == 60
    assert dict(ds.quirks) == {"duplicate_events": 0, "zero_length_events": 0, "events_past_duration": 0,
                               "events_before_zero": 0, "events_starting_past_duration": 0,
                               "videos_without_events": 0, "ids_starting_with_dash": 1269}
    raw = json.loads((folder / "unav100_annotations.json").read_text())["database"]["72f67ednp7w"]
    c = _clip(ds, "72f67ednp7w")
    n = len(raw["annotations"])
    assert np.allclose(c.targets["segments"][:n], [a["segment"] for a in raw["annotations"]])
    assert np.isnan(c.targets["segments"][n:]).all() and (c.targets["segment_labels"][n:] == -1).all()
    assert c.targets["segment_labels"][:n].tolist() == [36] * n and c.targets["duration"] == np.float32(47.68)
    assert c.targets["segments"].dtype == np.float32 and c.targets["segment_labels"].dtype == np.int16
    assert c.source.endswith("videos/72f67ednp7w.mp4") and c.splits == ("train",)


def test_positions_in_the_json_text_are_found_only_for_a_message(monkeypatch):
    """Finding a value's LINE:COL walks the file's text; done for each of UnAV-100's 30,059 events it
    made loading quadratic (CI hung here once). A file that loads asks for no position at all."""
    from pipeline.datasets import common

    asked = []
    real = common._json_position
    monkeypatch.setattr(common, "_json_position", lambda text, at: asked.append(at) or real(text, at))
    ds = load_dataset("unav100", need(ANNOTATIONS / "unav100"))
    assert len(ds.clips) == 10790 and asked == []


def test_unav100_media_of_any_common_extension(tmp_path):
    copy(need(ANNOTATIONS / "unav100"), tmp_path, "unav100_annotations.json")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "-Rjmgv0O_p0.mkv").write_bytes(b"x")
    ds = load_dataset("unav100", tmp_path)
    assert _clip(ds, "-Rjmgv0O_p0").source == str(tmp_path / "videos" / "-Rjmgv0O_p0.mkv")


def test_unav100_malformed_label_segment_subset(tmp_path):
    path = copy(need(ANNOTATIONS / "unav100"), tmp_path, "unav100_annotations.json") / "unav100_annotations.json"
    text = path.read_text()
    for old, new, words in (('"label": "skateboarding", "label_id": 36', '"label": "sailing", "label_id": 36',
                             ["label 'sailing' is not class 36 ('skateboarding')", 'database["72f67ednp7w"].annotations[0]']),
                            ('"segment": [13.01, 15.78316]', '"segment": [15.9, 15.78316]', ["start is after its end"]),
                            ('"segment": [13.01, 15.78316]', '"segment": ["13.01", 15.78316]', ["two numbers"]),
                            ('"label_id": 36', '"label_id": 100', ["0..99"]),
                            ('"subset": "train"}', '"subset": "training"}', ["subset", "train, validation, test"])):
        path.write_text(text.replace(old, new, 1))
        msg = fails("unav100", tmp_path, f"{path}:1:", *words)
        col = int(msg.split(":")[2])
        assert text.replace(old, new, 1)[col - 20: col + 20].strip(), msg    # a real column of the one line
    path.write_text(text[:-1])
    fails("unav100", tmp_path, f"{path}:1:", "not valid JSON")


# ----------------------------------------------------------------------------- ActivityNet
def test_activitynet_official_sample_is_the_validation_gt(tmp_path):
    copy(need(ANNOTATIONS / "activitynet"), tmp_path, "sample_detection_prediction.json")
    ds = load_dataset("activitynet", tmp_path)
    assert ds.attrs["annotation_source"] == "sample" and _sizes(ds) == {"val": 4926}
    assert _events(ds.clips) == 7654 and all(math.isnan(c.targets["duration"]) for c in ds.clips)
    labels = np.concatenate([c.targets["segment_labels"] for c in ds.clips])
    assert len(set(labels[labels >= 0].tolist())) == 200
    assert ds.quirks["duplicate_instances"] == 21 and ds.quirks["zero_length_instances"] == 3
    assert ds.quirks["instances_past_duration"] == 0           # unknown durations: nothing clipped
    c = _clip(ds, "wONwHYy59Tc")
    assert c.targets["segment_labels"][0] == activitynet.CLASSES.index("Blow-drying hair")
    assert c.source.endswith("videos/v_wONwHYy59Tc.mp4")


def test_activitynet_bsn_files(tmp_path):
    copy(need(ANNOTATIONS / "activitynet"), tmp_path, "anet_anno_action.json", "video_info_new.csv", "action_name.csv")
    ds = load_dataset("activitynet", tmp_path)
    assert ds.attrs["annotation_source"] == "bsn" and len(ds.clips) == 19228
    assert _sizes(ds) == {"train": 9649, "val": 4728, "test": 4851}
    assert [_events(ds.split(s)) for s in ("train", "val", "test")] == [14859, 7293, 0]
    assert ds.quirks["instances_past_duration"] == 215 and ds.quirks["testing_videos_without_labels"] == 4851
    assert ds.quirks["bsn_videos_not_in_info_csv"] == 0 and ds.clips[0].targets["segments"].shape == (23, 2)
    for c in ds.clips:                                         # clipped to the duration, nothing past it
        seg = c.targets["segments"][c.targets["segment_labels"] >= 0]
        assert (seg <= c.targets["duration"]).all() and (seg >= 0).all()
    c = _clip(ds, "QOlSCBRmfWY")                               # BSN key v_QOlSCBRmfWY
    assert np.isclose(c.targets["duration"], 82.73) and c.targets["segment_labels"][0] == activitynet.CLASSES.index("Ballet")


def test_activitynet_bsn_with_the_sample_gives_the_full_validation_set():
    ds = load_dataset("activitynet", need(ANNOTATIONS / "activitynet"))
    assert ds.attrs["annotation_source"] == "bsn+sample" and _sizes(ds) == {"train": 9649, "val": 4926, "test": 4851}
    assert _events(ds.split("val")) == 7654 and ds.quirks["validation_videos_only_in_sample"] == 198
    assert ds.quirks["validation_videos_differing_from_sample"] == 0
    assert sum(math.isnan(c.targets["duration"]) for c in ds.clips) == 198


def test_activitynet_official_min_json_layout_and_media_names(tmp_path):
    src = need(ANNOTATIONS / "activitynet")
    bsn = json.loads((src / "anet_anno_action.json").read_text())
    subsets = {r.split(",")[0]: r.split(",")[5] for r in (src / "video_info_new.csv").read_text().splitlines()[1:]}
    database = {v[2:]: {"duration": e["duration_second"], "subset": subsets[v], "resolution": "320x240",
                        "url": f"https://www.youtube.com/watch?v={v[2:]}", "annotations": e["annotations"]}
                for v, e in list(bsn.items())[:300]}
    (tmp_path / activitynet.OFFICIAL).write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    shutil.copy(src / "sample_detection_prediction.json", tmp_path)     # ignored: the official file comes first
    (tmp_path / "videos").mkdir()
    first, second = list(database)[:2]
    (tmp_path / "videos" / f"{first}.webm").write_bytes(b"x")
    (tmp_path / "videos" / f"v_{second}.mkv").write_bytes(b"x")
    ds = load_dataset("activitynet", tmp_path)
    assert ds.attrs["annotation_source"] == "official" and len(ds.clips) == 300
    via_bsn = {c.clip_id: c for c in load_dataset("activitynet", src).clips}
    for c in ds.clips:
        assert c.splits == via_bsn[c.clip_id].splits
        for name in ("segments", "segment_labels"):
            a, b = c.targets[name], via_bsn[c.clip_id].targets[name][: len(c.targets[name])]
            assert np.array_equal(a, b, equal_nan=True), c.clip_id
    assert ds.clips[0].source.endswith(f"{first}.webm") and ds.clips[1].source.endswith(f"v_{second}.mkv")
    del database[first]["subset"]
    (tmp_path / activitynet.OFFICIAL).write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    fails("activitynet", tmp_path, str(tmp_path / activitynet.OFFICIAL), f'database["{first}"]', "no key 'subset'")
    (tmp_path / activitynet.OFFICIAL).write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    fails("activitynet", tmp_path, f"{tmp_path / activitynet.OFFICIAL}:1:1: the top level", "no key 'taxonomy'")


def test_activitynet_malformed_bsn_and_sample(tmp_path):
    src = need(ANNOTATIONS / "activitynet")
    copy(src, tmp_path, "anet_anno_action.json", "video_info_new.csv", "action_name.csv")
    info, names, anno = (tmp_path / n for n in ("video_info_new.csv", "action_name.csv", "anet_anno_action.json"))
    good = info.read_text()
    info.write_text(good.replace("v_--0edUL8zmA,2303,92.18,25.0,24.9837274897,training",
                                 "v_--0edUL8zmA,2303,92.18,25.0,24.9837274897,Training"))
    fails("activitynet", tmp_path, f"{info}:3:", "subset 'Training'", "training, validation, testing")
    info.write_text(good.replace("v_---9CpRcKoU,", "---9CpRcKoU,"))
    fails("activitynet", tmp_path, f"{info}:2:", "does not begin with 'v_'")
    info.write_text(good)
    names.write_text(names.read_text().replace("Arm wrestling", "Arm-wrestling"))
    fails("activitynet", tmp_path, f"{names}:3:", "'Arm-wrestling'", "expected 'Arm wrestling'")
    names.unlink()
    text = anno.read_text()
    anno.write_text(text.replace('"label": "Ballet"', '"label": "Balet"', 1))
    fails("activitynet", tmp_path, f"{anno}:1:", 'v_QOlSCBRmfWY"].annotations[0].label', '"Balet"', "200 ActivityNet")
    for p in (anno, info):
        p.unlink()
    copy(src, tmp_path, "sample_detection_prediction.json")
    sample = tmp_path / "sample_detection_prediction.json"
    sample.write_text(sample.read_text().replace('"segment": [94.52138901727746, 130.48707650118757]',
                                                 '"segment": [94.52138901727746]'))
    fails("activitynet", tmp_path, f"{sample}:1:", 'results["wONwHYy59Tc"][0].segment', "two numbers")
    sample.unlink()
    fails("activitynet", tmp_path, str(tmp_path), "no ActivityNet annotations")


# ----------------------------------------------------------------------------- DESED
def test_desed_validation_and_public():
    ds = load_dataset("desed", need(ANNOTATIONS / "desed"))
    assert _sizes(ds) == {"train": 1168, "test": 692} and ds.T == 0 and ds.classes == desed.CLASSES
    assert _events(ds.split("train")) == 4224 and _events(ds.split("test")) == 2765
    assert ds.quirks["empty_rows"] == ds.quirks["clips_without_events"] == 15
    assert all((c.targets["segment_labels"] >= 0).any() for c in ds.split("test"))   # every public clip has events
    assert ds.quirks["events_past_duration"] == 16 and ds.quirks["durations_from_filenames"] == 692
    assert sum(c.targets["duration"] < 10 for c in ds.split("train")) == 102
    c = _clip(ds, "sdHVFACi42A_16_27")                         # public: the duration from the filename
    assert c.targets["duration"] == 11 and np.nanmax(c.targets["segments"]) == np.float32(11.0)
    assert c.source.endswith("audio/eval/public/sdHVFACi42A_16_27.wav") and c.splits == ("test",)
    empty = _clip(ds, "YU0Cg_t_3TdI_30.000_40.000")
    assert (empty.targets["segment_labels"] == -1).all() and np.isnan(empty.targets["segments"]).all()
    assert empty.source.endswith("audio/validation/YU0Cg_t_3TdI_30.000_40.000.wav")
    for clip in ds.split("train"):                             # clipped to the listed duration
        seg = clip.targets["segments"][clip.targets["segment_labels"] >= 0]
        assert (seg <= clip.targets["duration"]).all()


def test_desed_official_folders_and_a_video_beside_the_wav(tmp_path):
    src = need(ANNOTATIONS / "desed")
    copy(src, tmp_path / "metadata" / "validation", "validation.tsv", "validation_durations.tsv")
    copy(src, tmp_path / "metadata" / "eval", "public.tsv")
    folder = tmp_path / "audio" / "eval" / "public"
    folder.mkdir(parents=True)
    (folder / "sdHVFACi42A_16_27.mp4").write_bytes(b"x")
    ds, flat = load_dataset("desed", tmp_path), load_dataset("desed", src)
    assert [c.clip_id for c in ds.clips] == [c.clip_id for c in flat.clips] and ds.quirks["clips_with_video"] == 1
    assert _clip(ds, "sdHVFACi42A_16_27").source == str(folder / "sdHVFACi42A_16_27.mp4")


def test_desed_malformed_rows(tmp_path):
    copy(need(ANNOTATIONS / "desed"), tmp_path, "validation.tsv", "validation_durations.tsv", "public.tsv")
    path = tmp_path / "validation.tsv"
    good = path.read_text()
    lines = good.split("\n")
    for n, new, words in ((2, "Y00pbt6aJV8Y_350.000_360.000.wav\t0.000\t9.971\tVacuum cleaner", ["'Vacuum cleaner'", "10 DESED"]),
                          (2, "Y00pbt6aJV8Y_350.000_360.000.wav\tzero\t9.971\tVacuum_cleaner", ["onset 'zero'"]),
                          (2, "Y00pbt6aJV8Y_350.000_360.000.wav\t9.000\t8.000\tVacuum_cleaner", ["onset 9 is after offset 8"]),
                          (4053, "YU0Cg_t_3TdI_30.000_40.000.wav\t1.000\t\t", ["all be given or all be empty"]),
                          (2, "Y00pbt6aJV8Y_350.000_360.000.wav", ["1 field"])):
        path.write_text("\n".join(lines[: n - 1] + [new] + lines[n:]))
        fails("desed", tmp_path, f"{path}:{n}:", *words)
    path.write_text(good)
    durations = tmp_path / "validation_durations.tsv"
    durations.write_text(durations.read_text().replace("\t10.0\n", "\tten\n", 1))
    fails("desed", tmp_path, f"{durations}:2:", "duration 'ten'")


# ----------------------------------------------------------------------------- synthetic copies
def test_dense_clip_frames_and_sound_follow_the_events_kinds():
    """Seen events ("av", "visual") draw the class in every frame whose middle lies inside them,
    heard ones ("av", "audio") sound its tone sample-accurately; fractional boundaries."""
    rng = np.random.default_rng(5)
    classes = unav100.SYNTH_CLASSES
    for _ in range(4):
        frames, audio, events = dense_clip(rng, classes, 14.5, {"av": 1, "audio": 1, "visual": 1}, events=5)
        assert frames.shape == (14.5 * synth.DENSE_FPS, synth.SIZE, synth.SIZE, 3) and len(audio) == 14.5 * SR
        assert {e.kind for e in events[:2]} == {"av"} and events[1].start < events[0].end    # overlap, 2 classes
        assert events[0].name != events[1].name
        for e in events:
            look = LOOKS[key(e.name)]
            f = int((e.start + e.end) / 2 * synth.DENSE_FPS)
            drawn = (np.abs(frames[f].astype(int) - colour(look)).sum(-1) < 30).sum() > 50
            assert drawn == (e.kind != "audio"), e
            mid = int((e.start + e.end) / 2 * SR)
            piece = audio[mid - 2000: mid + 2000]
            t = np.arange(len(audio)) / SR
            ref = np.sin(2 * np.pi * tone_hz(look) * t[mid - 2000: mid + 2000])
            heard = abs(np.dot(piece, ref)) / len(ref) > 0.02
            assert heard == (e.kind != "visual"), e


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("dense"), seed=0, clips=4, only=["unav100", "activitynet", "desed"])


def test_synthetic_unav100_annotates_only_audio_visual_events(synthetic):
    ds = load_dataset("unav100", synthetic["unav100"])
    assert _sizes(ds) == {"train": 4, "val": 2, "test": 2} and ds.quirks["ids_starting_with_dash"] >= 1
    labels = {unav100.CLASSES[i] for c in ds.clips for i in c.targets["segment_labels"] if i >= 0}
    assert labels <= set(unav100.SYNTH_CLASSES)
    for c in ds.clips:
        d = float(c.targets["duration"])
        assert 10 <= d <= 60 and d * synth.DENSE_FPS == int(d * synth.DENSE_FPS)
        assert (c.targets["segment_labels"] >= 0).sum() >= 2
    seg = np.concatenate([c.targets["segments"] for c in ds.clips])
    seg = seg[~np.isnan(seg[:, 0])]
    assert (np.abs(seg * 4 - np.round(seg * 4)) > 1e-3).any()     # fractional, off the 0.25 s grid
    raw = (synthetic["unav100"] / "unav100_annotations.json").read_text()
    assert raw.count("\n") == 0 and '"validation"' in raw


def test_synthetic_unav100_video_shows_and_sounds_each_annotated_event(synthetic):
    from pipeline.decode import decode

    ds = load_dataset("unav100", synthetic["unav100"])
    c = ds.clips[0]
    decoded = decode(c.source, int(c.targets["duration"]))              # 1 frame a second today
    for (s, e), label in zip(c.targets["segments"], c.targets["segment_labels"]):
        if label < 0:
            continue
        look = LOOKS[key(unav100.CLASSES[label])]
        t = int(math.ceil(s))
        if t + 1 < e and t < len(decoded.frames):                       # a whole second inside the event
            frame = decoded.frames[t].astype(int)
            assert (np.abs(frame - colour(look)).sum(-1) < 60).sum() > 50, (s, e, label)
        mid = int((s + e) / 2 * SR)
        piece = decoded.audio[mid - 2000: mid + 2000]
        ref = np.sin(2 * np.pi * tone_hz(look) * np.arange(mid - 2000, mid + 2000) / SR)
        assert abs(np.dot(piece, ref)) / len(ref) > 0.01, (s, e, label)


def test_synthetic_activitynet_official_layout_and_quirks(synthetic):
    root = synthetic["activitynet"]
    raw = json.loads((root / activitynet.OFFICIAL).read_text())
    assert set(raw) == {"version", "taxonomy", "database"}
    assert {v["subset"] for v in raw["database"].values()} == {"training", "validation", "testing"}
    ds = load_dataset("activitynet", root)
    assert ds.attrs["annotation_source"] == "official" and _sizes(ds) == {"train": 4, "val": 2, "test": 2}
    assert {k: ds.quirks[k] for k in ("duplicate_instances", "zero_length_instances", "instances_past_duration",
                                      "testing_videos_without_labels")} == dict.fromkeys(
        ["duplicate_instances", "zero_length_instances", "instances_past_duration"], 1) | {"testing_videos_without_labels": 2}
    assert all(c.source.endswith(f"v_{c.clip_id}.mp4") for c in ds.clips)
    past = ds.split("train")[0]
    assert np.nanmax(past.targets["segments"]) == past.targets["duration"]       # clipped to it


def test_synthetic_desed_wav_clips_and_quirks(synthetic):
    import soundfile as sf

    root = synthetic["desed"]
    assert (root / "metadata" / "validation" / "validation_durations.tsv").is_file()
    ds = load_dataset("desed", root)
    assert _sizes(ds) == {"train": 4, "test": 2} and ds.quirks["clips_without_events"] == 1
    assert ds.quirks["events_past_duration"] == 1 and ds.quirks["clips_shorter_than_10_s"] == 1
    for c in ds.clips:
        assert c.source.endswith(".wav")
        info = sf.info(c.source)
        assert info.samplerate == SR and np.isclose(info.duration, c.targets["duration"])
    names = [c.clip_id for c in ds.clips]
    assert all(n.startswith("Y") and n.endswith(".000") for n in names[:4]) and not names[4].endswith(".000")
    labels = {desed.CLASSES[i] for c in ds.clips for i in c.targets["segment_labels"] if i >= 0}
    assert labels <= set(desed.SYNTH_CLASSES)


def test_adding_the_dense_benchmarks_moved_no_look_colour_or_tone_of_the_others(monkeypatch):
    """Looks, palette and tones are built dataset by dataset: computed without the dense three, the
    other seven datasets' classes keep exactly their colours and tones (their synthetic output is
    bit-identical to before the dense benchmarks existed)."""
    dense = ("unav100", "activitynet", "desed")
    before = {n: a for n, a in ADAPTERS.items() if n not in dense}
    names = [n for a in before.values() for n in [*a.synth_classes, *a.synth_silent]]
    looks = {k: i for i, k in enumerate(dict.fromkeys(key(n) for a in before.values() for n in a.synth_classes))}
    looks |= {k: len(looks) + i for i, k in enumerate(dict.fromkeys(
        key(n) for a in before.values() for n in a.synth_silent if key(n) not in looks))}
    monkeypatch.setattr(synth, "ADAPTERS", before)
    monkeypatch.setattr(synth, "LOOKS", looks)
    palette, tones = synth._palette(), synth._tones()
    monkeypatch.undo()
    for a in before.values():
        for n in a.synth_classes:
            old, new = looks[key(n)], LOOKS[key(n)]
            assert old == new and tones[old] == tone_hz(new), n
            if not a.synth_tiles:
                assert palette[old] == synth._PALETTE[new], n
    assert all(tone_hz(LOOKS[key(n)]) < 5000 for n in names + [n for d in dense for n in ADAPTERS[d].synth_classes])
