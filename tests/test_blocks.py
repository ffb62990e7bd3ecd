"""Stage one in blocks (decode_block): a video of any length decoded and encoded a block of steps
at a time gives the store the whole-video path gives, bit for bit, for both decoders, at hop
0.25 and 1, on clips that span several blocks with boundaries aligned to nothing (7 steps at
0.25, 3 at 1: not the CLIP batch of 16, not the time chunk), a clip shorter than a block, one whose frames steps
share across a boundary (2 fps), an audio-only source, and a truncated file that fails (after
some of its blocks were encoded) with an error naming it."""

import re
import subprocess

import numpy as np
import pytest

from pipeline import decode as D
from pipeline.decode import Blocks, DecodeError, decode, decode_blocks
from pipeline.extract import run_extract
from pipeline.store import FeatureStore

from .conftest import SAMPLES, need, tiny_config

SR = 16000
BLOCK = 7                    # steps at hop 0.25
BLOCKS = {0.25: BLOCK, 1.0: 3}


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """a_short: 1 s (4 steps at 0.25: less than a block); b_truncated: 12 s cut at 60 % of its
    bytes (index first, so the cut loses frames, not the index); c_long: 6 s, B-frames and
    60-frame GOPs (24 steps at 0.25: 4 blocks); d_fps2: 4 s at 2 fps (two steps a frame)."""
    d = tmp_path_factory.mktemp("blocks")
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", *sine, "-t", 1, "-c:v", "libx264", "-pix_fmt",
            "yuv420p", "-c:a", "aac", d / "a_short.mp4")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", *sine, "-t", 12, "-c:v", "libx264", "-g", 50,
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", d / "whole.mp4")
    data = (d / "whole.mp4").read_bytes()
    (d / "b_truncated.mp4").write_bytes(data[: int(len(data) * 0.6)])
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", *sine, "-t", 6, "-c:v", "libx264", "-bf", 3,
            "-g", 60, "-pix_fmt", "yuv420p", "-c:a", "aac", d / "c_long.mp4")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=2", *sine, "-t", 4, "-c:v", "libx264", "-pix_fmt",
            "yuv420p", "-c:a", "aac", d / "d_fps2.mp4")
    return d


def _sources(clips):
    paths = [clips / f"{name}.mp4" for name in ("a_short", "b_truncated", "c_long", "d_fps2")]
    return [*paths, need(SAMPLES / "audio" / "torchvggish_test.wav")], ["a_short", "b_truncated", "c_long",
                                                                        "d_fps2", "e_audio"]


def _extract(clips, out, **kw):
    sources, ids = _sources(clips)
    cfg = tiny_config(T=0, clips_per_task=len(ids), decode_threads=1, **kw)
    return run_extract(sources, ids, out, cfg), FeatureStore(out)


def _assert_same_store(a: FeatureStore, b: FeatureStore):
    assert a.feature_arrays == b.feature_arrays
    for name in a.feature_arrays:         # bit for bit: float16 compared as their bits (NaN too)
        x, y = a.read(name, slice(None)), b.read(name, slice(None))
        assert x.shape == y.shape and np.array_equal(x.view(np.uint16), y.view(np.uint16)), name
        assert np.array_equal(a.records(name), b.records(name)), name       # the same chunks, byte for byte
    for name in ("length", "audio_length", "visual_length", "status"):
        assert np.array_equal(a.read(name, slice(None)), b.read(name, slice(None))), name
    untimed = [{k: re.sub(r"\[\d\d:\d\d:\d\d\] ", "", v) for k, v in s.failures.items()} for s in (a, b)]
    assert untimed[0] == untimed[1] and a.cut == b.cut       # decord's messages carry the time


@pytest.mark.parametrize("backend,hop,patches", [("decord", 0.25, True), ("ffmpeg", 0.25, True), ("decord", 1.0, True),
                                                ("ffmpeg", 1.0, True), ("ffmpeg", 0.25, False)])
def test_a_store_made_in_blocks_is_the_whole_video_store_bit_for_bit(clips, tmp_path, backend, hop, patches):
    kw = dict(decoder=backend, hop={"videos": hop}, patches={"videos": patches})
    whole, ref = _extract(clips, tmp_path / "whole.zarr", decode_block=0, **kw)
    blocked, got = _extract(clips, tmp_path / "blocks.zarr", decode_block=BLOCKS[hop], **kw)
    assert whole.done == blocked.done == 4 and list(whole.failed) == list(blocked.failed) == ["b_truncated"]
    _assert_same_store(ref, got)
    assert ("patches" in got.feature_arrays) == patches
    lengths = dict(zip(got.clip_ids, got.read("length", slice(None)).tolist()))
    assert {k: lengths[k] for k in ("a_short", "b_truncated", "c_long", "d_fps2")} == \
           {"a_short": 1 / hop, "b_truncated": 0, "c_long": 6 / hop, "d_fps2": 4 / hop}   # c_long: 2 or 4 blocks
    assert lengths["e_audio"] > 0 and int(got.read("visual_length", got.index("e_audio"))) == 0
    reason = got.failures["b_truncated"]
    assert "b_truncated.mp4" in reason and ("decord failed" if backend == "decord" else "truncated or corrupt") \
        in reason


def test_decord_failing_midway_restarts_with_ffmpeg_and_the_store_is_the_same(clips, tmp_path, monkeypatch):
    """auto: decord fails on c_long's frames from 4 s on. Whole, it fails in its one call and
    ffmpeg decodes the clip; in blocks, it fails after 2 blocks (one CLIP batch encoded, with
    a_short's rows), which are forgotten, and ffmpeg starts again from step 0."""
    real = D.decord

    class Reader(real.VideoReader):
        calls = []

        def get_batch(self, indices):
            if not self._name.endswith("c_long.mp4"):
                return super().get_batch(indices)
            Reader.calls.append(list(indices))
            if max(indices) >= 100:
                raise RuntimeError("DECORDError: simulated")
            return super().get_batch(indices)

        def __init__(self, path, *args, **kw):
            super().__init__(path, *args, **kw)
            self._name = str(path)

    class Decord:
        VideoReader = Reader

    monkeypatch.setattr(D, "decord", Decord)
    kw = dict(decoder="auto", hop={"videos": 0.25})
    whole, ref = _extract(clips, tmp_path / "whole.zarr", decode_block=0, **kw)
    Reader.calls.clear()
    blocked, got = _extract(clips, tmp_path / "blocks.zarr", decode_block=BLOCK, **kw)
    assert [max(c) < 100 for c in Reader.calls] == [True, True, False]   # c_long's 2 blocks, then the failure
    assert whole.ffmpeg_fallbacks == blocked.ffmpeg_fallbacks == 1 and blocked.done == 4
    _assert_same_store(ref, got)


@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
@pytest.mark.parametrize("hop,T,pad", [(0.25, 600, False), (0.25, 60, True), (1.0, 20, False)],
                         ids=["formula", "padded", "hop1"])
def test_blocks_are_decodes_frames_a_block_at_a_time(clips, backend, hop, T, pad):
    """600 steps > LONG_SELECT: ffmpeg's formula select; 60: a list, and 12 steps of padding."""
    for name in ("c_long", "d_fps2", "a_short"):
        path = clips / f"{name}.mp4"
        ref = decode(path, T, SR, backend, pad, hop)
        blocks = Blocks(decode_blocks(path, T, SR, backend, pad, hop, BLOCK))
        parts = list(blocks)
        assert all(0 < len(p) <= BLOCK for p in parts), name
        assert np.array_equal(np.concatenate(parts), ref.frames), name
        d = blocks.decoded
        assert len(d.frames) == 0 and np.array_equal(d.audio, ref.audio), name
        assert (d.length, d.steps, d.audio_length, d.visual_length, d.source_seconds, d.backend) == \
               (ref.length, ref.steps, ref.audio_length, ref.visual_length, ref.source_seconds, ref.backend), name


@pytest.mark.parametrize("backend", ["auto", "ffmpeg"])
def test_a_truncated_video_fails_after_its_blocks_naming_the_file(clips, backend):
    path = clips / "b_truncated.mp4"
    with pytest.raises(DecodeError, match="truncated or corrupt") as whole:
        decode(path, 600, SR, backend, pad=False, hop=0.25)
    got = []
    with pytest.raises(DecodeError, match="truncated or corrupt") as blocked:
        for part in decode_blocks(path, 600, SR, backend, pad=False, hop=0.25, block=BLOCK):
            got.append(part)
    assert len(got) >= 3 and str(blocked.value) == str(whole.value) and "b_truncated.mp4" in str(blocked.value)


def test_an_encoder_failure_midway_fails_the_clips_of_its_batches_and_the_run_goes_on(clips, tmp_path,
                                                                                       monkeypatch):
    from pipeline.encoders import ClipEncoder

    real, calls = ClipEncoder.encode_frames, []

    def failing(self, pixels, *args):
        calls.append(len(pixels))
        if len(calls) == 2:   # 1: a_short's 4 rows + b_truncated's 12 (forgotten when it fails); 2: + c_long's
            raise RuntimeError("out of memory (simulated)")
        return real(self, pixels, *args)

    monkeypatch.setattr(ClipEncoder, "encode_frames", failing)
    summary, fs = _extract(clips, tmp_path / "s.zarr", decode_block=BLOCK, hop={"videos": 0.25}, decoder="ffmpeg")
    assert sorted(summary.failed) == ["a_short", "b_truncated", "c_long"]
    assert summary.failed["c_long"] == summary.failed["a_short"] == "encode/write failed: out of memory (simulated)"
    assert summary.done == 2 and fs.verify() == []                 # d_fps2 and e_audio, whole
    assert int(fs.read("length", fs.index("d_fps2"))) == 16


def test_clip_gets_the_same_batches_in_blocks(clips, tmp_path, monkeypatch):
    """On a CPU CLIP's rows do not depend on the other rows of their batch, so the stores above
    would agree even with other batches; on a GPU they may not. So: every preprocessing call and
    every CLIP batch, shapes and pixels, as the whole-video path makes them (clips crossing
    batches, the group's last batch short)."""
    from pipeline import extract as E
    from pipeline.encoders import ClipEncoder

    calls, encode, preprocess = [], ClipEncoder.encode_frames, E.clip_preprocess

    def spy_encode(self, pixels, *args):
        calls.append(("encode", tuple(pixels.shape), pixels.numpy().tobytes()))
        return encode(self, pixels, *args)

    def spy_preprocess(frames, *args):
        calls.append(("preprocess", tuple(frames.shape)))
        return preprocess(frames, *args)

    monkeypatch.setattr(ClipEncoder, "encode_frames", spy_encode)
    monkeypatch.setattr(E, "clip_preprocess", spy_preprocess)
    sources, ids = _sources(clips)
    keep = [k for k, i in enumerate(ids) if i != "b_truncated"]   # its batches are encoded, then forgotten
    sources, ids = [sources[k] for k in keep], [ids[k] for k in keep]
    made = []
    for block in (0, BLOCK):
        calls.clear()
        cfg = tiny_config(T=0, clips_per_task=len(ids), decode_threads=1, decode_block=block, decoder="decord",
                          hop={"videos": 0.25})
        assert run_extract(sources, ids, tmp_path / f"{block}.zarr", cfg).done == len(ids)
        made.append(list(calls))
    for kind in ("preprocess", "encode"):      # (the whole path preprocesses a group's frames first)
        whole, blocked = ([c for c in m if c[0] == kind] for m in made)
        assert [c[1] for c in whole] == [c[1] for c in blocked] and whole == blocked, kind
    assert [c[1][0] for c in made[0] if c[0] == "encode"] == [16, 12, 16]   # a_short + c_long: 4 + 24; d_fps2: 16
