import numpy as np
import pytest

from pipeline.decode import DecodeError, decode, frame_indices
from pipeline.timecode import dominant_hz, grey_level, tone_hz, write_clip

from .conftest import SAMPLES, need

SR = 16000


def test_frame_indices_are_the_middle_of_each_second():
    assert frame_indices(3, 25.0) == [12, 37, 62]
    # a 300-frame clip at 29.97 fps must give T indices, never an 11th second
    idx = frame_indices(10, 30000 / 1001)
    assert len(idx) == 10 and idx[-1] == 284 and max(idx) < 300


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
@pytest.mark.parametrize("name,seconds", [("fps25", 10), ("fps2997", 10), ("fps12_short", 7), ("fps30", 10)])
def test_frame_t_and_audio_t_come_from_second_t(timecode_dir, backend, name, seconds):
    d = decode(timecode_dir / f"{name}.mp4", T=10, sr=SR, backend=backend)
    assert d.frames.shape[0] == 10 and d.audio.shape == (10 * SR,) and d.audio.dtype == np.float32
    assert d.length == seconds and d.backend == backend
    for t in range(seconds):
        assert abs(d.frames[t].mean() - grey_level(t)) < 4, f"frame {t}"
        assert abs(dominant_hz(d.audio[t * SR:(t + 1) * SR], SR) - tone_hz(t)) <= 5, f"audio second {t}"
    for t in range(seconds, 10):          # padding: last real frame repeated, silence
        assert np.array_equal(d.frames[t], d.frames[seconds - 1])
    assert np.abs(d.audio[8 * SR if seconds == 7 else 10 * SR:]).max(initial=0) == 0


def test_backends_agree_on_real_clips():
    for clip in [need(SAMPLES / "llp" / "BjCEufrlXm4.mp4"), need(SAMPLES / "ave" / "-67UNKFmRLk.mp4")]:
        a, b = decode(clip, 10, SR, "decord"), decode(clip, 10, SR, "ffmpeg")
        assert a.frames.shape == b.frames.shape and a.frames.shape[0] == 10
        assert np.array_equal(a.frames, b.frames)
        assert np.array_equal(a.audio, b.audio)
        assert a.length == b.length == 10


def test_mono_is_the_mean_of_the_channels(tmp_path):
    # left 0.5 * sin, right silent: the mean has RMS 0.25 / sqrt(2); ffmpeg's -ac 1 gives 0.177 * sqrt(2)
    clip = write_clip(tmp_path / "left.mp4", 4, 25.0, channel_gains=(1.0, 0.0))
    rms = float(np.sqrt(np.mean(decode(clip, 4, SR).audio[SR:3 * SR] ** 2)))
    assert abs(rms - 0.25 / np.sqrt(2)) < 0.01


def test_bad_files_raise_errors_that_name_the_file_and_the_reason(bad_dir, tmp_path):
    cases = {"zero.mp4": "empty file", "corrupt.mp4": "ffmpeg failed", "silent.mp4": "no audio track"}
    for name, reason in cases.items():
        with pytest.raises(DecodeError, match=reason) as info:
            decode(bad_dir / name, 10, SR)
        assert name in str(info.value)
    with pytest.raises(DecodeError, match="no such file"):
        decode(tmp_path / "missing.mp4", 10, SR)


def test_image_sequence_sources_decode_like_videos(tmp_path):
    from PIL import Image

    from pipeline.decode import decode_source

    s4 = need(SAMPLES / "avsbench" / "s4")
    d = decode_source({"frames": [s4 / "0.jpg"], "audio": s4 / "audio.wav"}, T=5)
    assert d.frames.shape == (5, 540, 720, 3) and d.audio.shape == (5 * SR,) and d.backend == "images"
    assert d.length == 1                       # one real frame; the rest repeats it
    assert np.array_equal(d.frames[4], np.asarray(Image.open(s4 / "0.jpg").convert("RGB")))
    frames = []
    for t in range(3):
        frames.append(tmp_path / f"{t}.png")
        Image.fromarray(np.full((8, 8, 3), grey_level(t), np.uint8)).save(frames[-1])
    d = decode_source({"frames": frames, "audio": s4 / "audio.wav"}, T=3)
    assert [int(f.mean()) for f in d.frames] == [grey_level(t) for t in range(3)] and d.length == 3
    with pytest.raises(DecodeError, match="missing.png"):
        decode_source({"frames": [tmp_path / "missing.png"], "audio": s4 / "audio.wav"}, T=3)


def _clips_for_audio(timecode_dir, tmp_path):
    left = write_clip(tmp_path / "left.mp4", 4, 25.0, channel_gains=(1.0, 0.0))
    return [need(SAMPLES / "llp" / "BjCEufrlXm4.mp4"), need(SAMPLES / "ave" / "-67UNKFmRLk.mp4"),
            need(SAMPLES / "audio" / "torchvggish_test.wav"), timecode_dir / "fps2997.mp4",
            timecode_dir / "fps12_short.mp4", left]


def test_in_process_audio_equals_the_ffmpeg_command(timecode_dir, tmp_path):
    from pipeline import decode as D

    if D.av is None:
        pytest.skip("PyAV is not installed")
    for path in _clips_for_audio(timecode_dir, tmp_path):
        ours, command = D._audio_pyav(path, SR), D._audio_ffmpeg(path, SR)
        assert ours.dtype == np.float32 and ours.shape == command.shape, path.name
        assert np.abs(ours - command).max() < 1e-5, path.name      # same resampler, float rounding
        assert np.abs(command).max() > 0.01, path.name              # not a pair of silences


def test_audio_falls_back_to_the_ffmpeg_command(timecode_dir, tmp_path, monkeypatch, bad_dir):
    from pipeline import decode as D

    clip = timecode_dir / "fps25.mp4"
    expected = D._audio_ffmpeg(clip, SR)

    class Broken:                                   # PyAV present but failing on every file
        def open(self, *a, **k):
            raise OSError("pyav cannot read this")

    monkeypatch.setattr(D, "av", Broken())
    assert np.array_equal(D.read_audio(clip, SR), expected)
    with pytest.raises(DecodeError, match="ffmpeg failed"):
        D.read_audio(bad_dir / "corrupt.mp4", SR)
    monkeypatch.setattr(D, "av", None)               # PyAV not installed
    assert np.array_equal(D.read_audio(clip, SR), expected)
    with pytest.raises(DecodeError, match="no audio track"):
        D.read_audio(bad_dir / "silent.mp4", SR)
