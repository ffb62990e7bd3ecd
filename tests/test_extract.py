import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.extract import clip_ids_for, list_videos, run_extract
from pipeline.store import DONE, FAILED, PENDING, FeatureStore, StoreError

from .conftest import REPO, SAMPLES, need, tiny_config

FEATURES = ("audio", "visual", "patches")


def _extract(folder, out, **kw):
    paths = list_videos(folder)
    return run_extract(paths, clip_ids_for(paths, folder), out, tiny_config(**kw))


def test_good_clips_are_done_and_each_bad_one_is_reported(bad_dir, tmp_path):
    summary = _extract(bad_dir, tmp_path / "s.zarr")
    fs = FeatureStore(tmp_path / "s.zarr")
    status = dict(zip(fs.clip_ids, fs.status()))
    assert status == {"corrupt": FAILED, "fps12_short": DONE, "fps25": DONE, "silent": FAILED, "zero": FAILED}
    assert set(summary.failed) == {"corrupt", "silent", "zero"} and summary.done == 2
    assert "corrupt.mp4" in fs.failures["corrupt"] and "no audio track" in fs.failures["silent"]
    assert "empty file" in fs.failures["zero"]
    done = fs.done()
    for name in FEATURES:
        assert fs.group[name].chunks[0] == 1                          # one clip per chunk
        assert np.isfinite(fs.read(name, done).astype(np.float32)).all()
        assert np.isnan(fs.read(name, np.flatnonzero(fs.status() == FAILED))).all()   # untouched: fill value NaN
    assert fs.read("visual", done).shape == (2, 10, 64) and fs.read("patches", done).shape == (2, 10, 16, 64)
    assert fs.random_weights and fs.attrs["features"]["encoders"]["clip"]["weights"] == "random"
    # a rerun skips the done clips and does not retry the failed ones unless asked
    again = _extract(bad_dir, tmp_path / "s.zarr")
    assert (again.done, again.skipped, len(again.failed_before)) == (0, 2, 3)


def test_features_follow_the_seconds_at_every_frame_rate(timecode_dir, tmp_path):
    """Same content at 25, 29.97, 30 and 12 fps: second t gives the same features everywhere."""
    _extract(timecode_dir, tmp_path / "s.zarr")
    fs = FeatureStore(tmp_path / "s.zarr")
    idx = {c: fs.index(c) for c in ("fps25", "fps2997", "fps30", "fps12_short")}
    lengths = fs.read("length", list(idx.values()))
    assert list(lengths) == [10, 10, 10, 7]
    vis = fs.read("visual", list(idx.values())).astype(np.float32)       # (4, T, D)
    aud = fs.read("audio", list(idx.values())).astype(np.float32)
    ref_v, ref_a = vis[0], aud[0]
    for k in range(1, 4):
        n = lengths[k]
        assert np.abs(vis[k, :n] - ref_v[:n]).max() < 0.05 * np.abs(ref_v).max()
        # neighbouring seconds differ much more than the same second across frame rates
        assert np.abs(vis[k, 1:n] - ref_v[: n - 1]).max() > 4 * np.abs(vis[k, :n] - ref_v[:n]).max()
        assert np.abs(aud[k, 1:n - 1] - ref_a[1:n - 1]).max() < 0.2 * np.abs(aud[k, 1:n - 1] - ref_a[:n - 2]).max()


def test_real_llp_and_ave_clips_extract_to_T10(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for src in [need(SAMPLES / "llp" / "BjCEufrlXm4.mp4"), need(SAMPLES / "ave" / "-67UNKFmRLk.mp4")]:
        shutil.copy(src, videos / src.name)
    summary = _extract(videos, tmp_path / "s.zarr", patch_grid=0)
    fs = FeatureStore(tmp_path / "s.zarr")
    assert summary.done == 2 and not summary.failed
    assert fs.read("audio", [0, 1]).shape == (2, 10, 128)
    assert fs.read("visual", [0, 1]).shape == (2, 10, 64)
    assert fs.read("patches", [0, 1]).shape == (2, 10, 64, 64)        # native 8 x 8 grid of the tiny model
    assert list(fs.read("length", [0, 1])) == [10, 10]
    assert fs.attrs["T"] == 10 and fs.attrs["fps"] == 1 and fs.attrs["sample_rate"] == 16000


def test_dask_workers_give_the_in_process_result(timecode_dir, tmp_path):
    _extract(timecode_dir, tmp_path / "a.zarr", clips_per_task=1)
    _extract(timecode_dir, tmp_path / "b.zarr", clips_per_task=1, workers=2)
    a, b = FeatureStore(tmp_path / "a.zarr"), FeatureStore(tmp_path / "b.zarr")
    assert np.array_equal(a.status(), b.status()) and np.all(b.status() == DONE)
    for name in FEATURES:      # the workers' chunk records came back to the driver with the clips
        assert (a.records(name)[:, 0] > 0).all() and (b.records(name)[:, 0] > 0).all()
    assert b.verify() == []
    for name in FEATURES + ("length",):
        assert np.allclose(a.read(name, slice(None)).astype(np.float32),
                           b.read(name, slice(None)).astype(np.float32), atol=2e-3), name


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(timecode_dir, tmp_path, sig):
    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(3):
        for p in timecode_dir.glob("*.mp4"):
            shutil.copy(p, videos / f"{k}_{p.name}")
    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "cli", "extract", "--videos", str(videos), "--out", str(out), "--random-weights",
           "workers=0", "clip_model=avu-tiny-clip", "patch_grid=4", "clips_per_task=1", "clip_batch=16"]
    # Ctrl-C as from a terminal: SIGINT handled by default in the child, even where this test
    # runs as a background job of a non-interactive shell (which starts it with SIGINT ignored,
    # and an ignored SIGINT stays ignored in every child: measured, the run then finished).
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, seen = time.time() + 120, 0
    while time.time() < deadline and seen < 2:   # two reads in a row: not a read racing a write
        try:
            seen = seen + 1 if (FeatureStore(out).status() == DONE).sum() >= 2 else 0
        except Exception:  # the store is not created yet
            seen = 0
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    status = FeatureStore(out).status()
    assert 2 <= (status == DONE).sum() < len(status), \
        f"the interrupt must land mid-run: {(status == DONE).sum()} of {len(status)} done, exit {proc.returncode}"
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(cmd[:7] + [str(tmp_path / "whole.zarr")] + cmd[8:], cwd=REPO, capture_output=True)
    assert whole.returncode == 0
    a, b = FeatureStore(out), FeatureStore(tmp_path / "whole.zarr")
    assert np.all(a.status() == DONE) and a.verify() == []
    for name in FEATURES + ("length",):
        assert np.array_equal(a.read(name, slice(None)), b.read(name, slice(None))), name


def test_retry_failed_and_refusing_other_settings(bad_dir, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(bad_dir, folder)
    out = tmp_path / "s.zarr"
    _extract(folder, out)
    shutil.copy(folder / "fps25.mp4", folder / "zero.mp4")            # the user fixes one file
    assert _extract(folder, out).done == 0                            # not retried unless asked
    summary = _extract(folder, out, retry_failed=True)
    fs = FeatureStore(out)
    assert summary.done == 1 and fs.status()[fs.index("zero")] == DONE and "zero" not in fs.failures
    with pytest.raises(StoreError, match="patch_grid"):
        _extract(folder, out, patch_grid=2)
    with pytest.raises(StoreError, match="precision"):
        _extract(folder, out, precision="bf16")
    # a store made before the precision setting existed was fp32: it still resumes
    features = dict(fs.attrs["features"])
    del features["precision"]
    FeatureStore(out, mode="r+").group.attrs["features"] = features
    assert _extract(folder, out).skipped == 3
    with pytest.raises(StoreError, match="precision"):
        _extract(folder, out, precision="bf16")
    (folder / "extra.mp4").write_bytes((folder / "fps25.mp4").read_bytes())
    with pytest.raises(StoreError, match="another list of clips"):
        _extract(folder, out)


def test_cli_summary_exit_code_and_random_weight_warnings(bad_dir, tmp_path):
    runner = CliRunner()
    args = ["extract", "--videos", str(bad_dir), "--out", str(tmp_path / "s.zarr"), "--random-weights",
            "workers=0", "clip_model=avu-tiny-clip", "patch_grid=4", "precision=bf16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output                       # some clips failed
    assert "RANDOM" in result.output and "no audio track" in result.output and "zero" in result.output
    info = runner.invoke(app, ["info", str(tmp_path / "s.zarr")])
    assert info.exit_code == 0 and "RANDOM" in info.output and "done 2" in info.output
    assert "encoders in bf16" in info.output
    missing = runner.invoke(app, ["extract", "--videos", str(bad_dir), "--out", str(tmp_path / "t.zarr"),
                                  "workers=0", f"clip_weights={tmp_path}/nope.pt"])
    assert missing.exit_code == 2 and "nope.pt" in missing.output
    assert PENDING == 0


KEEP_PROBE = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from pipeline.extract import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(10):                     # a 100 MB activation, allocated and freed as in every batch
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(25_000_000).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sum(faults[-3:]))
"""


@pytest.mark.skipif(sys.platform != "linux" or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc only")
def test_freed_encoder_memory_is_reused_without_page_faults():
    """glibc unmaps blocks over 32 MB on free, so each batch faults its activations in again
    (24 400 pages for 100 MB); keep_freed_memory keeps them in the heap for the next batch.
    The first 2-4 allocations may still fault: torch's aligned allocation asks for a little
    more than the block just freed, until freed blocks coalesce (measured: never after the 4th)."""
    def probe(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", KEEP_PROBE.format(repo=str(REPO)), mode],
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], int(out[1])
    assert probe("default")[1] > 3 * 20_000
    kept, faults = probe("keep")
    assert kept == "True" and faults < 1000


def test_worker_cpus_are_disjoint_contiguous_shares():
    from pipeline.extract import worker_cpus

    assert [worker_cpus(k, 2, [0, 1]) for k in range(2)] == [{0}, {1}]
    shares = [worker_cpus(k, 3, [9, 2, 3, 4, 5, 6, 7, 8]) for k in range(3)]     # order given does not matter
    assert shares == [{2, 3, 4}, {5, 6, 7}, {8, 9}]
    assert worker_cpus(1, 4, [0, 1, 2]) == set()                  # fewer CPUs than workers: no pinning


PIN_PROBE = """
import os, sys, threading
sys.path.insert(0, {repo!r})
import pipeline.extract as E
E.load_encoders = lambda spec: None                 # the pinning, not the encoders, is under test
stop = threading.Event()
early = threading.Thread(target=stop.wait); early.start()      # a thread running before the pinning
class Worker: name = 1
cpus = sorted(os.sched_getaffinity(0))
E._warm(None, (2, cpus), dask_worker=Worker())
late = threading.Thread(target=stop.wait); late.start()
print(sorted(E.worker_cpus(1, 2, cpus)), *(sorted(os.sched_getaffinity(t)) for t in
      (0, early.native_id, late.native_id)), sep=";")
stop.set()
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and 2 CPUs")
def test_warm_binds_every_thread_of_a_local_worker_to_its_cores():
    out = subprocess.run([sys.executable, "-c", PIN_PROBE.format(repo=str(REPO))],
                         capture_output=True, text=True, check=True).stdout.strip().split(";")
    share, main, early, late = out
    assert share != str(sorted(os.sched_getaffinity(0)))         # a strict share of the CPUs
    assert main == early == late == share


def test_uneven_clips_are_recorded_per_modality_and_reported(timecode_dir, tmp_path):
    from .test_decode import _cut_audio

    videos = tmp_path / "v"
    videos.mkdir()
    _cut_audio(timecode_dir / "fps25.mp4", videos / "audio3.mp4", 3.0)
    for name in ("fps25", "fps12_short"):                              # full; 7.3 s of both
        shutil.copy(timecode_dir / f"{name}.mp4", videos / f"{name}.mp4")
    out, runner = tmp_path / "s.zarr", CliRunner()
    args = ["extract", "--videos", str(videos), "--out", str(out), "--random-weights", "workers=0",
            "clip_model=avu-tiny-clip", "patch_grid=4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "audio shorter than picture" in result.output and "audio3: audio 3 s, picture 10 s" in result.output
    fs = FeatureStore(out)
    rows = {c: [int(fs.read(a, fs.index(c))) for a in ("length", "audio_length", "visual_length")]
            for c in fs.clip_ids}
    assert rows == {"audio3": [10, 3, 10], "fps25": [10, 10, 10], "fps12_short": [7, 7, 7]}
    info = runner.invoke(app, ["info", str(out)])
    assert "audio shorter than picture: 1 clips, e.g. audio3 (audio 3 s, picture 10 s)" in info.output, info.output
    assert "picture shorter than audio: 0 clips" in info.output
    # a store made before the per-modality lengths existed resumes; what it did before stays unknown
    group = FeatureStore(out, mode="r+").group
    del group["audio_length"], group["visual_length"]
    status = group["status"][:]
    status[fs.index("audio3")] = PENDING
    group["status"][:] = status
    assert "not recorded" in runner.invoke(app, ["info", str(out)]).output
    summary = _extract(videos, out)
    assert summary.done == 1 and list(summary.short_audio) == ["audio3"]
    fs = FeatureStore(out)
    assert fs.read("audio_length", slice(None)).tolist() == [3, -1, -1]      # audio3, fps12_short, fps25
    assert "not recorded for 2 clips done before" in runner.invoke(app, ["info", str(out)]).output
