"""The feature step `hop`: frames and audio examples at 0.25 s steps on a real clip against slow
references, hop = 1 bit for bit as the features always were, audio-only `.wav` clips through
extraction into a store (visual_valid False in batches), and resuming a store made with a hop."""

import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from pipeline.config import ConfigError
from pipeline.decode import decode, decode_source, frame_indices, read_audio
from pipeline.encoders import clip_preprocess, example_windows, log_mel, vggish_examples
from pipeline.extract import feature_hop, load_encoders, resolve_weights, run_extract
from pipeline.store import FeatureStore, StoreError
from pipeline.timecode import write_clip

from .conftest import SAMPLES, need, tiny_config

SR = 16000
LLP = SAMPLES / "llp" / "BjCEufrlXm4.mp4"
WAV = SAMPLES / "audio" / "torchvggish_test.wav"
FEATURES = ("audio", "visual", "patches")
runner = CliRunner()


def _all_frames(path) -> tuple[np.ndarray, float]:
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy(), vr.get_avg_fps()


def _middle_frame(k: int, hop: float, fps: float) -> int:
    """The frame shown at the middle of step k, (k + 1/2) * hop seconds, in exact arithmetic."""
    t = (Fraction(k) + Fraction(1, 2)) * Fraction(hop)
    return int(t * Fraction(fps))


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
@pytest.mark.parametrize("steps,pad", [(40, True), (600, False)], ids=["list", "formula"])   # > LONG_SELECT
def test_quarter_second_steps_take_the_frame_at_each_steps_middle(backend, steps, pad):
    frames, fps = _all_frames(need(LLP))                         # 10.03 s at 29.92 fps
    d = decode(LLP, steps, SR, backend, pad=pad, hop=0.25)
    n = sum(1 for k in range(400) if _middle_frame(k, 0.25, fps) < len(frames))
    assert d.length == d.visual_length == d.audio_length == n == 40 and d.steps == len(d.frames)
    assert d.frames.shape[0] == (40 if pad else n)
    for k in range(n):
        assert np.array_equal(d.frames[k], frames[_middle_frame(k, 0.25, fps)]), k
    assert d.audio.shape == (d.steps * SR // 4,)
    assert np.array_equal(d.audio, read_audio(LLP, SR)[: d.steps * SR // 4])   # the file's own samples


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
def test_steps_shorter_than_frames_share_a_frame_decoded_once(tmp_path, backend):
    clip = write_clip(tmp_path / "fps1.2.mp4", 10.0, 1.2)       # 0.3 frames a step: frames repeat
    frames, fps = _all_frames(clip)
    for steps, pad in ((40, True), (600, False)):
        d = decode(clip, steps, SR, backend, pad=pad, hop=0.25)
        assert d.length == 40, (steps, d.length)
        assert all(np.array_equal(d.frames[k], frames[_middle_frame(k, 0.25, fps)]) for k in range(40))


def test_audio_example_k_is_the_second_around_step_ks_middle():
    """Slow reference: each example cut alone from the decoded samples, one second starting 0.5 s
    before the step's middle, zeros outside the clip; its 96 log-mel frames are then centred
    12.5 ms before the middle (200 samples)."""
    d = decode(need(LLP), 40, SR, hop=0.25)
    audio = torch.from_numpy(d.audio)
    ours = vggish_examples(audio[None], 40, SR, hop=0.25)
    assert ours.shape == (40, 1, 96, 64)
    for k in range(40):
        middle = (2 * k + 1) * SR // 8                             # (k + 0.5) * 0.25 s in samples
        window = torch.zeros(SR)
        lo, hi = max(0, middle - SR // 2), min(len(audio), middle + SR // 2)
        window[lo - (middle - SR // 2):hi - (middle - SR // 2)] = audio[lo:hi]
        ref = log_mel(window[None])[0, :96]
        assert torch.allclose(ours[k, 0], ref, atol=1e-5), k
        centre = (middle - SR // 2) + (95 * 160 + 400) / 2          # mean of the frames' centres
        assert middle - centre == 200
    # the first and last examples reach past the clip: zeros there, not the neighbouring audio
    w = example_windows(audio[None], 40, SR, hop=0.25)
    assert not w[0, :6000].any() and torch.equal(w[0, 6000:], audio[:10000])
    assert not w[-1, -6000:].any()


def test_hop_1_examples_are_the_first_096_s_of_each_second_bit_for_bit():
    audio = torch.randn(3, 7 * SR) * 0.1
    old = log_mel(audio.reshape(-1, 7, SR).reshape(-1, SR))[:, :96, None].transpose(1, 2)   # the code before hop
    assert torch.equal(vggish_examples(audio, 7, SR), old)
    assert torch.equal(vggish_examples(audio, 7, SR, hop=1.0), old)
    assert frame_indices(10, 30000 / 1001, 1.0) == [int((t + 0.5) * 30000 / 1001) for t in range(10)]


def test_hop_1_store_is_bit_identical_to_the_features_from_first_principles(tmp_path):
    """Frames int((t + 0.5) * fps), the audio's 1-second pieces, each clip encoded alone as the
    extractor batches it (clips_per_task 1): the store holds exactly these bytes."""
    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(need(LLP), videos / "llp.mp4")
    shutil.copy(need(SAMPLES / "ave" / "-67UNKFmRLk.mp4"), videos / "ave.mp4")
    cfg = tiny_config(clips_per_task=1)
    paths = sorted(videos.iterdir())
    run_extract(paths, [p.stem for p in paths], tmp_path / "s.zarr", cfg)
    fs = FeatureStore(tmp_path / "s.zarr")
    assert fs.hop == 1.0 and fs.attrs["fps"] == 1 and fs.attrs["features"]["hop"] == 1.0
    clip, vggish = load_encoders(resolve_weights(cfg, cfg.device)[0])
    for i, path in enumerate(paths):
        frames, fps = _all_frames(path)
        frames = frames[[int((t + 0.5) * fps) for t in range(10)]]
        samples = read_audio(path, SR)[: 10 * SR]
        samples = np.pad(samples, (0, 10 * SR - samples.size))
        cls, patches = clip.encode_frames(clip_preprocess(torch.from_numpy(frames), clip.image_size, clip.mean,
                                                          clip.std))
        pieces = torch.from_numpy(samples).reshape(-1, SR)
        examples = log_mel(pieces)[:, :96, None].transpose(1, 2).contiguous(memory_format=torch.channels_last)
        audio = vggish.net(examples)
        for name, ref in (("visual", cls), ("patches", patches), ("audio", audio)):
            assert np.array_equal(fs.read(name, i), ref.half().numpy()), (path.name, name)


def test_the_hop_setting_is_checked_and_a_benchmark_defaults_to_its_adapter():
    from pipeline.datasets import ADAPTERS

    assert feature_hop(tiny_config()) == 1.0 and feature_hop(tiny_config(hop={"videos": 0.25})) == 0.25
    assert feature_hop(tiny_config(), "ave") == ADAPTERS["ave"].hop
    assert feature_hop(tiny_config(hop={"ave": 0.5}), "ave") == 0.5
    assert feature_hop(tiny_config(hop={"ave": 0.5}), "llp") == ADAPTERS["llp"].hop
    with pytest.raises(ConfigError, match="unknown key.*avee.*valid keys.*videos"):
        feature_hop(tiny_config(hop={"avee": 0.5}))
    with pytest.raises(ConfigError, match="whole number of samples"):
        feature_hop(tiny_config(hop={"videos": 1e-5}))
    with pytest.raises(ConfigError, match="expected a mapping"):
        feature_hop(tiny_config(hop=0.25))
    with pytest.raises(ValueError, match="whole number of 0.3 s steps"):
        run_extract([need(LLP)], ["llp"], "/nonexistent/s.zarr", tiny_config(hop={"videos": 0.3}))


def test_a_fixed_T_store_at_half_second_steps_counts_steps(timecode_dir, tmp_path):
    run_extract([timecode_dir / "fps12_short.mp4"], ["short"], tmp_path / "s.zarr", tiny_config(hop={"videos": 0.5}))
    fs = FeatureStore(tmp_path / "s.zarr")
    assert fs.attrs["T"] == 20 and fs.hop == 0.5 and fs.attrs["fps"] == 2.0
    assert fs.read("visual", 0).shape[0] == 20 and int(fs.read("length", 0)) == 15     # 7.3 s: 14.6 steps
    assert np.isfinite(fs.read("audio", 0).astype(np.float32)).all() and fs.verify() == []


# ----------------------------------------------------------------------------- audio-only clips


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A .wav (4 s, audio only) and the LLP video, any length at 0.25 s steps."""
    out = tmp_path_factory.mktemp("mixed") / "m.zarr"
    summary = run_extract([need(WAV), need(LLP)], ["wav", "llp"], out, tiny_config(T=0, hop={"videos": 0.25}))
    assert summary.done == 2 and not summary.failed and summary.audio_only == 1
    return out


def test_a_wav_clip_is_audio_only_in_the_store_and_in_batches(mixed):
    from trainer.data import TaskData, TaskStore

    fs = FeatureStore(mixed)
    assert fs.hop == 0.25 and fs.attrs["time_chunk"] == 40 and fs.group["visual"].shape[1] == 2400
    assert fs.attrs["audio_only"] == 1 and fs.audio_only().tolist() == [0]
    assert fs.read("length", slice(None)).tolist() == [16, 40]               # 4 s and 10 s in steps
    assert fs.read("visual_length", slice(None)).tolist() == [0, 40]
    assert fs.read("audio_length", slice(None)).tolist() == [16, 40]
    for name in ("visual", "patches"):
        assert not (mixed / name / "c" / "0").exists()                       # no chunk written for the wav
        assert (mixed / name / "c" / "1").is_dir()
        assert fs.read(name, 0).shape[0] == 16 and not fs.read(name, 0).any()   # zeros, not NaN
        assert not fs.read(name, [0, 1])[0].any() and np.isfinite(fs.read(name, [0, 1]).astype(np.float32)).all()
        assert (fs.records(name)[0, :, 0] == 0).all()                       # recorded: no chunk
    audio = fs.read("audio", 0).astype(np.float32)
    assert np.isfinite(audio).all() and audio.any()
    d = decode_source(WAV, 2400, SR, pad=False, hop=0.25)
    assert d.audio_only and d.visual_length == 0 and d.length == d.steps == 16
    clip, vggish = load_encoders(resolve_weights(tiny_config(), "cpu")[0])
    ref = vggish(torch.from_numpy(d.audio[None]), 16, SR, hop=0.25)[0].half().numpy()
    assert np.allclose(audio, ref.astype(np.float32), atol=2e-3)
    assert fs.check() == [] and fs.verify() == []

    ts = TaskStore("vggss", mixed, 0, fs.group["visual"].shape[-1], fs.group["patches"].shape[2],
                   np.zeros((1, 1), np.float32), None, [], True, samples={"train": np.array([0, 1])}, hop=fs.hop)
    data = TaskData(ts, with_patches=True)
    data._fs, data._prompt = fs, np.zeros(fs.group["visual"].shape[-1], np.float16)
    batch = data.read("train", [1, 0])
    assert batch["visual_valid"].dtype == bool and batch["visual_valid"].tolist() == [True, False]
    assert not batch["visual"][1].any() and batch["length"].tolist() == [40, 16]

    info = runner.invoke(app, ["info", str(mixed), "--verify"])
    assert info.exit_code == 0, info.output
    assert "audio only (no picture; no visual chunks): 1 done clips" in info.output and "step 0.25 s" in info.output
    assert "picture shorter than audio: 0 clips" in info.output


def test_a_missing_visual_chunk_is_damage_only_for_a_clip_with_a_picture(mixed, tmp_path):
    out = tmp_path / "m.zarr"
    shutil.copytree(mixed, out)
    (out / "visual" / "c" / "1" / "0" / "0").unlink()                    # the video's first visual chunk
    found = FeatureStore(out).check()
    assert [(d.clip_id, d.array) for d in found] == [("llp", "visual")] and "missing" in found[0].reason
    shutil.copytree(out / "patches" / "c" / "1", out / "patches" / "c" / "0")   # a chunk where the wav has none
    found = {(d.clip_id, d.array) for d in FeatureStore(out).verify()}
    assert found == {("llp", "visual"), ("wav", "patches")}
    summary = run_extract([WAV, LLP], ["wav", "llp"], out, tiny_config(T=0, hop={"videos": 0.25}, repair=True))
    assert set(summary.repaired) == {"llp", "wav"}
    assert FeatureStore(out).verify() == [] and not [f for f in (out / "patches" / "c" / "0").rglob("*") if f.is_file()]
    for name in FEATURES:
        assert np.array_equal(FeatureStore(out).read(name, slice(None)), FeatureStore(mixed).read(name, slice(None)))


def test_resume_with_a_hop_and_refusing_another(mixed, tmp_path):
    out = tmp_path / "m.zarr"
    shutil.copytree(mixed, out)
    FeatureStore(out, mode="r+").mark_pending([0, 1])        # as a run killed before the driver marked them
    shutil.rmtree(out / "audio" / "c" / "1")                  # ... one of them before its worker wrote audio
    cfg = tiny_config(T=0, hop={"videos": 0.25})
    summary = run_extract([WAV, LLP], ["wav", "llp"], out, cfg)
    assert summary.done == 2 and summary.skipped == 0
    a, b = FeatureStore(out), FeatureStore(mixed)
    assert a.verify() == []
    for name in FEATURES + ("length", "audio_length", "visual_length"):
        assert np.array_equal(a.read(name, slice(None)), b.read(name, slice(None))), name
    assert run_extract([WAV, LLP], ["wav", "llp"], out, cfg).skipped == 2
    with pytest.raises(StoreError, match="hop"):
        run_extract([WAV, LLP], ["wav", "llp"], out, tiny_config(T=0, hop={"videos": 0.5}))
    with pytest.raises(StoreError, match="hop"):
        run_extract([WAV, LLP], ["wav", "llp"], out, tiny_config(T=0))


def test_a_store_made_before_the_hop_resumes_at_hop_1(timecode_dir, tmp_path):
    out = tmp_path / "s.zarr"
    run_extract([timecode_dir / "fps12_short.mp4"], ["short"], out, tiny_config())
    group = FeatureStore(out, mode="r+").group
    features = dict(group.attrs["features"])
    del features["hop"]
    group.attrs["features"] = features
    del group.attrs["hop"]
    assert FeatureStore(out).hop == 1.0
    assert run_extract([timecode_dir / "fps12_short.mp4"], ["short"], out, tiny_config()).skipped == 1
