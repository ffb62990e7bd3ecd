"""Time-coded test clips: the picture and the tone of second s both encode s.

Frame content is a flat grey of level `grey_level(s)` and the soundtrack is a sine at
`tone_hz(s)`, so a decoder that mixes up seconds, or frames and audio, is caught. Used by the
tests, the benchmarks and `make demo` until the synthetic mini-benchmark exists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def grey_level(s: int) -> int:
    return 16 + 20 * (s % 12)


def tone_hz(s: int) -> float:
    return 300.0 + 150.0 * (s % 24)


def write_clip(path: Path, seconds: float, fps: float = 25.0, size: tuple[int, int] = (96, 64),
               audio: bool = True, sample_rate: int = 44100,
               channel_gains: tuple[float, ...] = (1.0, 1.0)) -> Path:
    """An H.264/AAC mp4 of `seconds`, frame k showing grey_level(floor(k / fps)); channel c of
    the audio is channel_gains[c] * 0.5 * sin(tone_hz(second))."""
    import ffmpeg

    w, h = size
    n_frames = int(round(seconds * fps))
    levels = np.array([grey_level(int(k / fps)) for k in range(n_frames)], np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (n_frames, h, w, 3))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
        streams = [video]
        if audio:
            import soundfile as sf

            t = np.arange(int(seconds * sample_rate)) / sample_rate
            freq = np.array([tone_hz(int(x)) for x in np.floor(t)])
            phase = 2 * np.pi * np.cumsum(freq) / sample_rate
            wave = 0.5 * np.sin(phase)
            wav = Path(tmp) / "a.wav"
            sf.write(wav, (wave[:, None] * np.asarray(channel_gains)).astype(np.float32), sample_rate)
            streams.append(ffmpeg.input(str(wav)))
        out_args = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 10, "g": 1}
        if audio:
            out_args.update(acodec="aac", audio_bitrate="128k")
        (ffmpeg.output(*streams, str(path), **out_args).overwrite_output()
         .run(input=np.ascontiguousarray(frames).tobytes(), capture_stdout=True, capture_stderr=True))
    return path


def dominant_hz(piece: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece))))
    return float(np.argmax(spectrum) * sample_rate / len(piece))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Write time-coded test clips (frame and tone encode the second).")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, nargs=2, default=(320, 240))
    args = ap.parse_args()
    rates = [25.0, 30000 / 1001, 30.0, 24.0]
    for k in range(args.clips):
        path = args.out / f"clip{k:03d}.mp4"
        if not path.exists():
            write_clip(path, args.seconds - (k % 3 == 2) * 2.5, rates[k % len(rates)], tuple(args.size))
    print(f"{args.clips} clips in {args.out}")


if __name__ == "__main__":
    main()
