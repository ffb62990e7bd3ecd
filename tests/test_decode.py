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


# ----------------------------------------------------------------------------- uneven and short clips


def _cut_audio(src, dst, seconds: float):
    """`src` with its audio re-encoded (AAC) from only the first `seconds`; the picture copied."""
    import ffmpeg

    picture, sound = ffmpeg.input(str(src)).video, ffmpeg.input(str(src), t=seconds).audio
    ffmpeg.output(picture, sound, str(dst), vcodec="copy", acodec="aac").overwrite_output().run(quiet=True)
    return dst


def _frame_coded_clip(path, n_frames: int, fps: float):
    """An mp4 whose frame k is a flat grey 20 + 20k, with a 440 Hz tone as long as the picture."""
    import ffmpeg

    levels = (20 + 20 * np.arange(n_frames)).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (n_frames, 64, 96, 3))
    picture = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s="96x64", framerate=fps)
    sound = ffmpeg.input(f"sine=frequency=440:duration={n_frames / fps}", f="lavfi")
    (ffmpeg.output(picture, sound, str(path), vcodec="libx264", pix_fmt="yuv420p", crf=10, g=1, acodec="aac")
     .overwrite_output().run(input=np.ascontiguousarray(frames).tobytes(), quiet=True))
    return path


@pytest.fixture(scope="module")
def audio_cut_at_3(timecode_dir, tmp_path_factory):
    return _cut_audio(timecode_dir / "fps25.mp4", tmp_path_factory.mktemp("uneven") / "audio3.mp4", 3.0)


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
def test_audio_shorter_than_the_picture_keeps_every_second_of_picture(audio_cut_at_3, backend):
    d = decode(audio_cut_at_3, T=10, sr=SR, backend=backend)
    assert (d.length, d.visual_length, d.audio_length) == (10, 10, 3)     # not 4: AAC's ~19 ms tail is no second
    for t in range(10):                                                  # ten real frames, none repeated
        assert abs(d.frames[t].mean() - grey_level(t)) < 4, f"frame {t}"
    for t in range(3):
        assert abs(dominant_hz(d.audio[t * SR:(t + 1) * SR], SR) - tone_hz(t)) <= 5, f"audio second {t}"
    rms = [float(np.sqrt(np.mean(d.audio[t * SR:(t + 1) * SR] ** 2))) for t in range(10)]
    assert min(rms[:3]) > 0.3 and rms[3] < 0.01 * rms[2]                  # 0.5 sin: RMS 0.35
    assert not d.audio[int(3.1 * SR):].any()                             # silence from there on, exactly


def test_both_decoders_agree_on_uneven_and_short_clips(audio_cut_at_3, tmp_path):
    short = _frame_coded_clip(tmp_path / "short.mp4", 10, 25.0)
    for clip in (audio_cut_at_3, short):
        a, b = decode(clip, 10, SR, "decord"), decode(clip, 10, SR, "ffmpeg")
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio), clip.name
        assert (a.length, a.audio_length, a.visual_length) == (b.length, b.audio_length, b.visual_length)


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
@pytest.mark.parametrize("n_frames,fps", [(10, 25.0), (12, 30000 / 1001), (1, 25.0)])
def test_a_video_shorter_than_a_second_gives_one_second_from_its_last_frame(tmp_path, backend, n_frames, fps):
    clip = _frame_coded_clip(tmp_path / f"short{n_frames}.mp4", n_frames, fps)    # 0.4 s, 0.4 s, 0.04 s
    d = decode(clip, T=5, sr=SR, backend=backend)
    assert (d.length, d.visual_length, d.audio_length) == (1, 1, 1)
    assert d.frames.shape == (5, 64, 96, 3) and d.audio.shape == (5 * SR,)
    last = 20 + 20 * (n_frames - 1)                                     # the last frame, not the first
    assert all(abs(f.mean() - last) < 3 for f in d.frames)              # padded by repeating it
    assert np.abs(d.audio[:int(0.03 * SR)]).max() > 0.1 and not d.audio[SR:].any()


def test_a_partial_second_is_real_when_it_covers_the_middle_of_the_second():
    from pipeline.decode import audio_seconds, shortfall

    def slow(n_samples, sr, T):                       # whole seconds, then the half-second rule
        whole, rest = divmod(n_samples, sr)
        n = min(T, whole + (rest > sr // 2))
        return max(n, 1) if n_samples and T else n

    for n in [0, 1, 7999, 8000, 8001, 16000, 23999, 24000, 24001, 3 * SR + 300, int(3.4 * SR), int(3.6 * SR),
              10 * SR - 1, 10 * SR, 12 * SR]:
        assert audio_seconds(n, SR, 10) == slow(n, SR, 10), n
    assert [audio_seconds(int(s * SR), SR, 10) for s in (0.4, 3.0186, 3.4, 3.6, 9.98, 11)] == [1, 3, 3, 4, 10, 10]
    assert shortfall(10, 10) == "" and "silence" in shortfall(3, 10) and "last frame" in shortfall(10, 7)


def _reference(clip, T):
    """What decoding meant before uneven clips were handled: frames int((t + 0.5) * fps), the audio
    cut or zero-padded to T seconds, length min(frames, ceil(audio seconds))."""
    import decord

    from pipeline.decode import read_audio

    vr = decord.VideoReader(str(clip), num_threads=1)           # both backends give decord's frames
    frames = vr.get_batch(frame_indices(T, vr.get_avg_fps())).asnumpy()
    audio = read_audio(clip, SR)[: T * SR]
    return frames, np.pad(audio, (0, T * SR - audio.size)), min(len(frames), -(-audio.size // SR))


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
def test_normal_clips_decode_as_before(backend):
    for clip in [need(SAMPLES / "llp" / "BjCEufrlXm4.mp4"), need(SAMPLES / "ave" / "-67UNKFmRLk.mp4")]:
        frames, audio, length = _reference(clip, 10)
        d = decode(clip, 10, SR, backend)
        assert np.array_equal(d.frames, frames) and np.array_equal(d.audio, audio), clip.name
        assert d.length == length == d.visual_length == d.audio_length == 10, clip.name


def test_picture_seconds_counts_the_seconds_whose_middle_frame_exists():
    from pipeline.decode import picture_seconds

    for fps in (1.0, 12.0, 25.0, 30000 / 1001, 59.94):
        for n_frames in (1, 2, 5, 11, 12, 13, 250, 299, 300, 301, 18000):
            slow = sum(1 for i in frame_indices(n_frames + 10, fps) if i < n_frames)
            assert picture_seconds(n_frames, fps) == max(slow, 1), (fps, n_frames)
    assert picture_seconds(0, 25.0) == 0


@pytest.mark.parametrize("name,seconds", [("fps2997", 10), ("fps12_short", 7), ("fps1.2", 10)])
def test_any_length_keeps_the_seconds_there_are_and_ffmpeg_agrees_past_its_list(timecode_dir, tmp_path, name,
                                                                              seconds):
    """pad=False: no padding, T only a cap. T = 600 > LONG_SELECT makes ffmpeg select frames by a
    formula instead of a list of indices: it must pick decord's frames (at 1.2 fps some seconds'
    middle frame lies in the second before)."""
    path = timecode_dir / f"{name}.mp4"
    if name == "fps1.2":
        path = write_clip(tmp_path / "fps1.2.mp4", 10.0, 1.2)
    a = decode(path, T=600, sr=SR, backend="decord", pad=False)
    b = decode(path, T=600, sr=SR, backend="ffmpeg", pad=False)
    for d in (a, b):
        assert d.frames.shape[0] == d.length == d.visual_length == d.source_seconds == seconds
        assert d.audio.shape == (seconds * SR,) and d.audio_length == seconds
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    cut = decode(path, T=4, sr=SR, pad=False)
    assert cut.length == 4 and cut.source_seconds == seconds and cut.audio.shape == (4 * SR,)
    padded = decode(path, T=4, sr=SR)
    assert np.array_equal(padded.frames, cut.frames) and padded.source_seconds == seconds
