"""Decoding: one frame per feature step (nearest the middle of the step) and 16 kHz mono audio.

Steps. The time axis is cut into steps of `hop` seconds (1 by default; 0.25 for the dense
benchmarks): step k covers [k * hop, (k + 1) * hop). Its frame is the one shown at the step's
middle, int((k + 0.5) * hop * fps); at hop = 1 that is frame int((t + 0.5) * fps) of second t,
as always. Every count below (T, `length`, `audio_length`, `visual_length`, `source_seconds`)
counts steps; at hop = 1 steps are seconds. `Decoded.audio` holds the steps' samples,
T * hop * sample_rate of them; the encoder cuts each step's VGGish example from it
(encoders.vggish_examples).

Frames: decord first; ffmpeg (through ffmpeg-python) takes over where decord fails or is not
installed. Both pick the same frame indices, each frame decoded once in one pass through the
file (decord reads forward from frame to frame; ffmpeg selects them with a `select` filter),
so frame k and audio step k always describe step k. Where steps are shorter than frames
(hop * fps < 1) neighbouring steps share a frame: it is decoded once and repeated. Audio:
FFmpeg's resampler, through PyAV in this process (the ffmpeg command where PyAV fails),
channels averaged here: decord's `mono=True` is not the channel mean (measured on the LLP
sample: ~1.39x it) and its `mono=False` at 16 kHz gives NaNs.

A modality holds step k when it has content at the middle of that step: the picture when
frame int((k + 0.5) * hop * fps) exists, the audio when sample int((k + 0.5) * hop * sr)
does. A partial step is therefore real when more than half of it is there (at hop = 1: 3.4 s
of audio is 3 seconds, 3.6 s is 4; the ~20 ms an AAC encoder adds to 3 s of sound make no
fourth second). A modality shorter than one step that has any content has one step: a 0.4 s
video gives its last frame as frame 0. Real content is always a prefix, so each modality's
real steps are one number: `visual_length` and `audio_length`.
The clip's `length` is decided by the picture: its steps are kept whatever the audio holds,
and audio missing from them is silence (3 s of audio in a 10 s video: length 10, audio_length
3). Audio that goes on past the last frame is kept, up to T steps, and counted in
`audio_length`, but it does not lengthen the clip: those steps have no frame of their own.
Everything is padded to T steps: the last real frame repeated, silence appended.

Blocks (decode_blocks): the frames come `block` steps at a time, so that a long video's
frames never exist all at once (10 min of 1280 x 720 at 0.25 s steps: 2400 frames, 6.6 GB);
decode() is its one block. decord's get_batch reads each block's frames forward from where the
block before stopped; ffmpeg's one pass writes its frames to a pipe, read a block at a time.
The audio is read whole (10 min: 38 MB).

Audio-only sources (a `.wav` path, DESED): no picture. `length` = `audio_length` (the sound
decides), `visual_length` = 0, `frames` is empty and `audio_only` is set.

Any length (pad=False; `avu extract T=0`): T is only a cap (max_seconds / hop). The clip keeps
its `length` steps, nothing is padded, and audio is kept for those steps only: audio past the
last frame has no frame to go with and is not stored (audio_length <= length there). Either
way `source_seconds` is the picture's steps in the whole file (the sound's, for an audio-only
source), uncapped, so a clip cut at T is known (the extract summary and the store say so).
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

try:  # decord has no wheels for some platforms; ffmpeg then does everything
    import decord
except ImportError:  # pragma: no cover - depends on the platform
    decord = None
try:  # audio in this process; the ffmpeg command where PyAV is missing or fails
    import av
except ImportError:  # pragma: no cover - depends on the install
    av = None


LONG_SELECT = 100    # steps past which ffmpeg selects frames by a formula, not a list (_ffmpeg_select)
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus"}   # sources with sound only (DESED)


class DecodeError(RuntimeError):
    """A file could not be decoded into the frames and audio T steps need."""


@dataclass
class Decoded:
    frames: np.ndarray   # (T, H, W, 3) uint8, padded by repeating the last real frame; (0, 1, 1, 3): audio only
    audio: np.ndarray    # (T * hop * sample_rate,) float32 mono, zero-padded
    length: int          # the clip's steps: the picture's (the sound's where there is no picture)
    backend: str         # what decoded the frames: "decord", "ffmpeg", "images" or "audio" (none)
    audio_length: int    # steps 0..audio_length-1 hold real audio, the rest silence
    visual_length: int   # steps 0..visual_length-1 hold their own frame, the rest repeat it; 0: no picture
    source_seconds: int = 0   # the picture's steps in the whole file (> length: cut at T)
    steps: int = 0       # steps held (T, or `length` unpadded): rows of every feature
    audio_only: bool = False


def step_samples(hop: float, sr: int) -> int:
    """Audio samples in one step; a step must hold a whole number of them."""
    n = hop * sr
    if hop <= 0 or abs(n - round(n)) > 1e-6:
        raise ValueError(f"hop {hop} s is {n:g} samples at {sr} Hz: a step must be a positive whole number of samples")
    return int(round(n))


def frame_indices(T: int, fps: float, hop: float = 1.0) -> list[int]:
    """Index of the frame shown at the middle of each step k = 0..T-1, (k + 0.5) * hop seconds."""
    return [int((k + 0.5) * hop * fps) for k in range(T)]


def picture_seconds(n_frames: int, fps: float, hop: float = 1.0) -> int:
    """Steps k whose middle frame int((k + 0.5) * hop * fps) exists, uncapped; 1 for any shorter video."""
    if n_frames <= 0 or fps <= 0:
        return 0
    t = int(n_frames / (hop * fps)) + 2
    while t > 0 and int((t - 0.5) * hop * fps) >= n_frames:     # step t - 1 has no middle frame
        t -= 1
    return max(t, 1)


def audio_seconds(n_samples: int, sr: int, T: int, hop: float = 1.0) -> int:
    """Steps k < T whose middle sample int((k + 0.5) * hop * sr) exists; 1 for any shorter sound."""
    n = sum(1 for k in range(T) if int((k + 0.5) * hop * sr) < n_samples)
    return max(n, 1) if n_samples > 0 and T > 0 else n


def _unique_frames(wanted: list[int]) -> tuple[list[int], np.ndarray]:
    """The distinct indices of `wanted` (non-decreasing), and where each wanted frame is among them."""
    unique = sorted(set(wanted))
    return unique, np.searchsorted(unique, wanted)


def _expand(frames: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Frames of the distinct indices -> one per step: repeated where steps share a frame, cut
    where the file ended before a step's frame."""
    where = where[where < len(frames)]
    return frames if len(where) == len(frames) and np.array_equal(where, np.arange(len(frames))) else frames[where]


def shortfall(audio_length: int, visual_length: int, hop: float = 1.0) -> str:
    """How a clip's audio and picture differ in real steps, in words (seconds); "" where they agree."""
    unit = "seconds" if hop == 1 else "steps"
    if audio_length < visual_length:
        return (f"audio {audio_length * hop:g} s, picture {visual_length * hop:g} s: "
                f"{unit} {audio_length}-{visual_length - 1} padded with silence")
    if visual_length < audio_length:
        return (f"picture {visual_length * hop:g} s, audio {audio_length * hop:g} s: "
                f"{unit} {visual_length}-{audio_length - 1} repeat the last frame")
    return ""


def _ffmpeg_error(path: Path, err: Exception) -> DecodeError:
    stderr = (getattr(err, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()
    return DecodeError(f"{path}: ffmpeg failed: {stderr[-1] if stderr else err}")


def _probe(path: Path) -> dict:
    try:
        return ffmpeg.probe(str(path))
    except ffmpeg.Error as err:
        raise _ffmpeg_error(path, err) from None


def _rate(stream: dict) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        num, _, den = stream.get(key, "0/0").partition("/")
        if float(den or 1) and float(num) / float(den or 1) > 0:
            return float(num) / float(den or 1)
    return 0.0


def _wav_payload(wav: bytes, path: Path) -> tuple[np.ndarray, int]:
    """Float32 samples and channel count of a streamed WAV (its data size field is unset)."""
    pos, channels = 12, 0
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], int.from_bytes(wav[pos + 4:pos + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(wav[pos + 10:pos + 12], "little")
        elif chunk == b"data":
            data = np.frombuffer(wav[pos + 8:], np.uint8)
            return data[: data.size // 4 * 4].view(np.float32), channels
        pos += 8 + size + (size & 1)
    raise DecodeError(f"{path}: ffmpeg returned no audio data")


def read_audio(path: Path, sr: int) -> np.ndarray:
    """Mono float32 at `sr`: the MEAN of the channels (ffmpeg's -ac 1 gives (L+R)/sqrt(2)).

    PyAV decodes and resamples in this process with FFmpeg's own libraries (libswresample, as
    the ffmpeg command does). Where PyAV is missing or fails, the ffmpeg command takes over; it
    also words the error. Starting an ffmpeg process costs ~70 ms of CPU a clip by itself."""
    if av is not None:
        try:
            return _audio_pyav(path, sr)
        except DecodeError:
            raise
        except Exception:  # noqa: BLE001 - PyAV raises many kinds; the command says what is wrong
            pass
    return _audio_ffmpeg(path, sr)


def _audio_pyav(path: Path, sr: int) -> np.ndarray:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise DecodeError(f"{path}: no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", rate=sr)     # packed float32, layout kept
        chunks, channels = [], 0
        for frame in itertools.chain(container.decode(stream), [None]):   # None: the resampler's tail
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                channels = len(out.layout.channels)
    if not chunks:
        return np.zeros(0, np.float32)                            # _pad reports it
    return _channel_mean(np.concatenate(chunks), channels)


def _audio_ffmpeg(path: Path, sr: int) -> np.ndarray:
    """The ffmpeg command: one call and no ffprobe (the WAV header it writes tells the channels)."""
    try:
        wav, _ = (ffmpeg.input(str(path))
                  .output("pipe:", format="wav", acodec="pcm_f32le", ar=sr, map="0:a:0")
                  .run(capture_stdout=True, capture_stderr=True))
    except ffmpeg.Error as err:
        if b"matches no streams" in (err.stderr or b""):
            raise DecodeError(f"{path}: no audio track") from None
        raise _ffmpeg_error(path, err) from None
    samples, channels = _wav_payload(wav, path)
    if channels < 1:
        raise DecodeError(f"{path}: ffmpeg wrote audio without a channel count")
    return _channel_mean(samples, channels)


def _channel_mean(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved samples -> mono, the mean of the channels (a trailing partial frame dropped)."""
    return samples[: samples.size // channels * channels].reshape(-1, channels).mean(axis=1)


def _decord_blocks(path: Path, T: int, hop: float = 1.0, block: int = 0) -> Iterator[np.ndarray]:
    """The frames of steps k < T, `block` steps at a time (0: all at once); returns the picture's
    steps in the whole file. get_batch reads forward from one wanted frame to the next (seeking
    only across keyframes ahead), from call to call too: one pass. A frame that steps on both
    sides of a block boundary share is decoded once."""
    if decord is None:
        raise DecodeError("decord is not installed")
    vr = decord.VideoReader(str(path), num_threads=1)
    n_frames, fps = len(vr), vr.get_avg_fps()
    if not fps or fps <= 0:
        raise DecodeError(f"{path}: container reports no frame rate")
    wanted = [i for i in frame_indices(T, fps, hop) if i < n_frames]
    if not wanted and n_frames > 0 and T > 0:
        wanted = [n_frames - 1]                  # shorter than one step: its last frame
    step, last = block or len(wanted), None      # last: (index, frame) of the block before
    for s in range(0, len(wanted), max(step, 1)):
        unique, where = _unique_frames(wanted[s:s + step])
        again = last is not None and unique[0] == last[0]
        ask = unique[1:] if again else unique
        frames = vr.get_batch(ask).asnumpy() if ask else np.zeros((0, *last[1].shape), np.uint8)
        if len(frames) != len(ask):
            raise DecodeError(f"{path}: asked decord for {len(ask)} frames, got {len(frames)}")
        if again:
            frames = np.concatenate([last[1][None], frames])
        last = (unique[-1], frames[-1].copy())
        yield _expand(frames, where)
    return picture_seconds(n_frames, fps, hop)


def _ffmpeg_select(indices: list[int], unique: list[int], hop: float, fps: float) -> str:
    """The select filter's expression that keeps exactly decord's frames `unique` (fps=1 or -r 1
    pick other frames); ffmpeg-python escapes ','."""
    if len(indices) <= LONG_SELECT:
        return "+".join(f"eq(n,{i})" for i in unique)
    # ffmpeg cannot parse hundreds of terms. int((k + 0.5) * hop * fps) = n needs k >= n / (hop * fps)
    # - 0.5: the first such k is ceil(n / (hop * fps) - 0.5), and n is picked iff it maps to n;
    # its neighbours too, for rounding
    # (where steps are shorter than frames two neighbours can pick one frame: gt(..., 0) keeps it once)
    k = f"ceil(n/{hop * fps!r}-0.5)"
    terms = "+".join(f"eq(n,trunc(({k}{d}+0.5)*{hop!r}*{fps!r}))" for d in ("-1", "", "+1"))
    return f"gt({terms},0)*lte(n,{indices[-1]})"


def _ffmpeg_blocks(path: Path, T: int, info: dict, hop: float = 1.0, block: int = 0) -> Iterator[np.ndarray]:
    """The frames of steps k < T, `block` steps at a time (0: all at once), streamed from one
    ffmpeg pass through a pipe (a select filter keeps each wanted frame once); returns the
    picture's steps in the whole file (from the frame count the container states, else its
    duration). A truncated file, or ffmpeg failing, raises after the frames it gave."""
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    fps, w, h = _rate(video), int(video["width"]), int(video["height"])
    if fps <= 0:
        raise DecodeError(f"{path}: container reports no frame rate")
    indices = frame_indices(T, fps, hop)
    unique, where = _unique_frames(indices)
    step, read, steps, last = block or T, 0, 0, None     # read: frames that came; last: the latest
    with _FfmpegPipe(path, w, h, select=_ffmpeg_select(indices, unique, hop, fps)) as pipe:
        for s in range(0, T, max(step, 1)):
            need = where[s:s + step]                   # consecutive positions among `unique`
            first = int(need[0])                       # read - 1 (a frame shared with the block before) or read
            frames = pipe.read(int(need[-1]) + 1 - read)
            read += len(frames)
            if first < read - len(frames):
                frames = np.concatenate([last[None], frames])
            need = need[need < read]                   # the file ended before the other steps' frames
            if len(need) == 0:
                break
            last = frames[-1].copy()
            steps += len(need)
            yield _expand(frames, need - first)
            if len(need) < len(where[s:s + step]):
                break
        read += pipe.drain()                           # frames past the last wanted one, if any
    if read == 0 and T > 0:
        # fewer frames than the first index: shorter than one step; its last frame, as decord
        frames = _ffmpeg_frames(path, w, h, vframes=indices[0] + 1)[-1:]
        read, steps = len(frames), len(frames)
        if steps:
            yield frames
    # a truncated file makes ffmpeg exit 0 with fewer frames: compare with what it claims
    duration = float(info.get("format", {}).get("duration") or 0.0)
    claimed = sum(1 for i in unique if i < duration * fps - 1)
    if read < claimed - 1:
        raise DecodeError(f"{path}: truncated or corrupt: container claims {duration:.2f} s, "
                          f"decoded only {read} of {claimed} frames")
    stated = int(video.get("nb_frames") or 0) or int(round(duration * fps))
    return max(picture_seconds(stated, fps, hop), steps)


class _FfmpegPipe:
    """An ffmpeg command writing the RGB frames of the video stream (those `select` picks, in
    decoding order) to a pipe read a few at a time; its stderr goes to a file (a pipe could
    fill and stall it). Leaving the `with` normally raises DecodeError where ffmpeg failed;
    leaving it early (an error, a consumer that stopped) ends ffmpeg."""

    def __init__(self, path: Path, w: int, h: int, select: str | None = None, **output):
        stream = ffmpeg.input(str(path), noautorotate=None).video      # decord does not rotate either
        if select is not None:
            stream = stream.filter("select", select)
        self.args = (stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", **output)
                     .compile())
        self.path, self.shape = path, (h, w, 3)

    def __enter__(self) -> "_FfmpegPipe":
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self.stderr)
        except OSError as err:
            self.stderr.close()
            raise DecodeError(f"{self.path}: ffmpeg failed: {err}") from None
        return self

    def read(self, n: int) -> np.ndarray:
        """The next n frames, fewer where the stream ends first."""
        out = np.empty((max(n, 0), *self.shape), np.uint8)
        if out.size == 0:
            return out
        view, got = memoryview(out).cast("B"), 0
        while got < len(view):
            k = self.proc.stdout.readinto(view[got:])
            if not k:
                break
            got += k
        return out[: got // (self.shape[0] * self.shape[1] * 3)]

    def read_all(self) -> np.ndarray:
        frames = np.frombuffer(self.proc.stdout.read(), np.uint8)
        size = int(np.prod(self.shape))
        return frames[: frames.size // size * size].reshape(-1, *self.shape)

    def drain(self) -> int:
        """Frames left in the stream, read and dropped."""
        size = 0
        while chunk := self.proc.stdout.read(1 << 20):
            size += len(chunk)
        return size // int(np.prod(self.shape))

    def __exit__(self, kind, *_) -> None:
        try:
            if kind is not None:
                self.proc.kill()
            self.proc.stdout.close()
            code = self.proc.wait()
            self.stderr.seek(0)
            stderr = self.stderr.read()
        finally:
            self.stderr.close()
        if kind is None and code != 0:
            raise _ffmpeg_error(self.path, ffmpeg.Error("ffmpeg", b"", stderr))


def _ffmpeg_frames(path: Path, w: int, h: int, select: str | None = None, **output) -> np.ndarray:
    """RGB frames of the video stream (those `select` picks), in decoding order, all at once."""
    with _FfmpegPipe(path, w, h, select, **output) as pipe:
        return pipe.read_all()


def decode_images(frames: list, audio: Path, T: int, sr: int = 16000, pad: bool = True,
                  hop: float = 1.0) -> Decoded:
    """A clip given as one image per second (AVSBench) plus an audio file; step k shows image
    int((k + 0.5) * hop) (image k at hop = 1)."""
    from PIL import Image

    audio = Path(audio)
    unique, where = _unique_frames([i for i in frame_indices(T, 1.0, hop) if i < len(frames)])
    for p in [*(Path(frames[i]) for i in unique), audio]:
        if not p.is_file():
            raise DecodeError(f"{p}: no such file")
    try:
        imgs = [np.asarray(Image.open(frames[i]).convert("RGB")) for i in unique]
    except OSError as err:
        raise DecodeError(f"{err}") from None
    if len({im.shape for im in imgs}) > 1:
        raise DecodeError(f"{frames[0]}: frames of one clip differ in size")
    samples = read_audio(audio, sr)
    stack = _expand(np.stack(imgs), where) if imgs else np.zeros((0, 1, 1, 3), np.uint8)
    return _pad(stack, samples, T, sr, audio, "images", picture_seconds(len(frames), 1.0, hop), pad, hop)


def decode_audio(path: Path, T: int, sr: int = 16000, pad: bool = True, hop: float = 1.0) -> Decoded:
    """An audio-only source (DESED's .wav): its sound's steps decide the clip; no frames."""
    path = _existing(path)
    audio = read_audio(path, sr)
    if audio.size == 0:
        raise DecodeError(f"{path}: no audio samples decoded")
    H = step_samples(hop, sr)
    whole = audio_seconds(audio.size, sr, audio.size // H + 2, hop)    # the sound's steps, uncapped
    if not pad:
        T = min(T, whole)
    n_audio = min(T, whole)
    audio = audio[: T * H].astype(np.float32, copy=False)
    if audio.size < T * H:
        audio = np.pad(audio, (0, T * H - audio.size))
    return Decoded(np.zeros((0, 1, 1, 3), np.uint8), audio, n_audio, "audio", n_audio, 0, whole, T, True)


def _finish(n_frames: int, audio: np.ndarray, T: int, sr: int, path: Path, used: str,
            source_seconds: int, pad: bool = True, hop: float = 1.0, shape: tuple = (1, 1, 3)) -> Decoded:
    """Everything but the frames, for a picture of `n_frames` steps (frames: (0, *shape))."""
    if n_frames == 0:
        raise DecodeError(f"{path}: no video frames decoded ({used})")
    if audio.size == 0:
        raise DecodeError(f"{path}: no audio samples decoded")
    if not pad:                              # any length: the clip's own steps, T only a cap
        T = min(T, n_frames)
    H = step_samples(hop, sr)
    n_video, n_audio = min(T, n_frames), audio_seconds(audio.size, sr, T, hop)
    audio = audio[: T * H].astype(np.float32, copy=False)
    if audio.size < T * H:
        audio = np.pad(audio, (0, T * H - audio.size))
    # the picture decides the clip's steps; audio missing from them is the silence just appended
    return Decoded(np.zeros((0, *shape), np.uint8), audio, n_video, used, n_audio, n_video,
                   max(source_seconds, n_video), T)


def _pad(frames: np.ndarray, audio: np.ndarray, T: int, sr: int, path: Path, used: str,
         source_seconds: int, pad: bool = True, hop: float = 1.0) -> Decoded:
    d = _finish(len(frames), audio, T, sr, path, used, source_seconds, pad, hop, frames.shape[1:])
    frames = frames[:d.steps]
    if len(frames) < d.steps:
        frames = np.concatenate([frames, np.repeat(frames[-1:], d.steps - len(frames), axis=0)])
    d.frames = np.ascontiguousarray(frames)
    return d


def is_audio_only(source) -> bool:
    """A source with sound only: a path to an audio file (AUDIO_SUFFIXES)."""
    return not isinstance(source, dict) and Path(source).suffix.lower() in AUDIO_SUFFIXES


def decode_source(source, T: int, sr: int = 16000, backend: str = "auto", pad: bool = True,
                  hop: float = 1.0) -> Decoded:
    """A source is a video path, an audio path (.wav: audio only), or {"frames": [image paths,
    one per second], "audio": path}. T counts steps of `hop` seconds."""
    if isinstance(source, dict):
        return decode_images(source["frames"], source["audio"], T, sr, pad, hop)
    if is_audio_only(source):
        return decode_audio(source, T, sr, pad, hop)
    return decode(source, T, sr, backend, pad, hop)


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    return path


def decode(path: Path, T: int, sr: int = 16000, backend: str = "auto", pad: bool = True,
           hop: float = 1.0) -> Decoded:
    """Frames and audio of the first T steps of `path` (padded to T; pad=False: only the
    steps there are, at most T); raises DecodeError naming the file. All frames at once: the
    frames of decode_blocks' one block (and the padding after it)."""
    blocks = Blocks(decode_blocks(path, T, sr, backend, pad, hop))
    parts: list[np.ndarray] = []
    for part in blocks:
        parts = [] if part is None else [*parts, part]
    d = blocks.decoded
    d.frames = np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return d


class Blocks:
    """Iterates a decode_blocks generator; `decoded` is what it returned, once it has ended."""

    def __init__(self, blocks: Generator[np.ndarray | None, None, Decoded]):
        self.blocks, self.decoded = blocks, None

    def __iter__(self) -> Iterator[np.ndarray | None]:
        self.decoded = yield from self.blocks


def decode_blocks(path: Path, T: int, sr: int = 16000, backend: str = "auto", pad: bool = True,
                  hop: float = 1.0, block: int = 0) -> Generator[np.ndarray | None, None, Decoded]:
    """decode(), `block` steps of frames at a time (0: all in one): yields the frames of steps
    0, 1, ... in order, at most `block` at a time (the padding after them too), and returns the
    Decoded of everything else (its `frames` empty, (0, H, W, 3)). Only a few blocks' frames
    exist at once, not the video's. None among the blocks: decord failed after some (backend
    auto) and ffmpeg starts again from step 0; the blocks before it are void. Frames, audio and
    every count are decode()'s, whatever the block (tests/test_blocks.py)."""
    if backend not in ("auto", "decord", "ffmpeg"):
        raise ValueError(f"unknown decoder {backend!r}: auto, decord or ffmpeg")
    path = _existing(path)
    audio = read_audio(path, sr)            # raises "no audio track" where there is none
    if backend != "ffmpeg":
        got = _Got()
        try:
            seconds = yield from _tally(_decord_blocks(path, T, hop, block), got)
            d = _finish(got.steps, audio, T, sr, path, "decord", seconds, pad, hop, got.shape)
        except Exception as err:  # decord raises bare RuntimeErrors (DECORDError) of many kinds
            if backend == "decord":
                raise DecodeError(f"{path}: decord failed: {str(err)[:300]}") from None
            if got.steps:
                yield None
        else:
            yield from _padding(got.last, d.steps - got.steps, block)
            return d
    info = _probe(path)
    if not any(s["codec_type"] == "video" for s in info.get("streams", [])):
        raise DecodeError(f"{path}: no video stream")
    got = _Got()
    seconds = yield from _tally(_ffmpeg_blocks(path, T, info, hop, block), got)
    d = _finish(got.steps, audio, T, sr, path, "ffmpeg", seconds, pad, hop, got.shape)
    yield from _padding(got.last, d.steps - got.steps, block)
    return d


def decode_source_blocks(source, T: int, sr: int = 16000, backend: str = "auto", pad: bool = True,
                         hop: float = 1.0, block: int = 0) -> Generator[np.ndarray | None, None, Decoded]:
    """decode_source() as decode_blocks() gives it: a video block by block; image sequences
    (a few seconds each) and audio-only sources (no frames) decoded whole."""
    if isinstance(source, dict) or is_audio_only(source):
        d = decode_source(source, T, sr, backend, pad, hop)
        frames, d.frames = d.frames, d.frames[:0]
        step = block or len(frames)
        for s in range(0, 0 if d.audio_only else len(frames), max(step, 1)):
            yield frames[s:s + step]
        return d
    return (yield from decode_blocks(source, T, sr, backend, pad, hop, block))


@dataclass
class _Got:
    """What a decoder has yielded so far: steps, and the latest frame (for the padding)."""

    steps: int = 0
    last: np.ndarray | None = None

    @property
    def shape(self) -> tuple:
        return (1, 1, 3) if self.last is None else self.last.shape


def _tally(blocks: Generator, got: _Got) -> Generator:
    """The non-empty blocks of `blocks`, counted in `got`; returns what `blocks` returns."""
    try:
        while True:
            try:
                part = next(blocks)
            except StopIteration as stop:
                return stop.value
            if len(part):
                got.steps, got.last = got.steps + len(part), part[-1].copy()   # not a view: the block can go
                yield part
    finally:
        blocks.close()


def _padding(last: np.ndarray | None, n: int, block: int) -> Iterator[np.ndarray]:
    """n steps repeating the last real frame, `block` at a time (0: at once)."""
    step = block or n
    for s in range(0, n, max(step, 1)):
        yield np.repeat(last[None], min(step, n - s), axis=0)
