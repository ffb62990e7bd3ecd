"""Tests of `avu report` (trainer/report.py, rundir.py, plots.py) on fake run directories
written by hand in the format of trainer/rundir.py."""
import csv
import io
import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from trainer import report as R
from trainer.tasks import BENCHMARKS
from trainer.rundir import RunDirError, load_evals, load_run, read_log

from .conftest import SHARED, need

MARK = "RANDOM-WEIGHT FEATURES"
LLP = dict(zip(BENCHMARKS["llp"].metric_keys, [.62, .65, .58, .6167, .60, .55, .61, .50, .5533, .52]))
AVQA = {k: .75 for k in BENCHMARKS["music-avqa"].metric_keys} | {"Audio/Counting": .70, "All": .77}
JOINT_METRICS = {
    "ave": {"accuracy": .80}, "llp": LLP, "vggss": {"ciou": .40, "auc": .42},
    "avs-s4": {"miou": .80, "fscore": .88}, "avs-ms3": {"miou": .55, "fscore": .70},
    "avss": {"miou": .30, "fscore": .35}, "music-avqa": AVQA,
}


def make_run(root: Path, name: str, metrics: dict, *, tasks=None, joint=True, random_weights=False,
             supervision="full", eval_random=False, split="test", stores=None, extra=None) -> Path:
    """A run directory as training and `avu eval` write it; metrics {task: {key: fraction}}."""
    run = root / name
    (run / "eval" / split).mkdir(parents=True)
    tasks = list(metrics) if tasks is None else tasks
    (run / "config.yaml").write_text(f"name: {name}\ntasks: [{', '.join(tasks)}]\n")
    (run / "run.json").write_text(json.dumps({
        "name": name, "tasks": tasks, "random_weights": random_weights, "joint": joint,
        "ave_supervision": supervision, "stores": stores or {}}))
    log = [{"kind": "train", "step": s, "epoch": s / 10, "task": t, "loss": 2.0 / (1 + s)}
           for s in range(0, 40, 4) for t in tasks]
    log += [{"kind": "val", "step": s, "epoch": s / 10, "task": t,
             "metrics": {k: v * s / 40 for k, v in metrics.get(t, {}).items()}}
            for s in (10, 20, 40) for t in tasks]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log) + '{"kind": "tr')
    for task, m in metrics.items():
        d = {"task": task, "split": split, "n": 10, "random_weights": eval_random, "metrics": m,
             "chance": {"accuracy": 1 / 29} if task == "ave" else {}} | (extra or {}).get(task, {})
        (run / "eval" / split / f"{task}.json").write_text(json.dumps(d))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    per_class = {"llp": {"per_class": {"Speech": .7, "Car": .3, "Dog": .5}}}
    return {
        "joint": make_run(root, "joint", JOINT_METRICS, extra=per_class),
        "ave-only": make_run(root, "ave-only", {"ave": {"accuracy": .774}}, joint=False),
        "llp-only": make_run(root, "llp-only", {"llp": LLP | {"segment_type_avg": .63}}, joint=False),
        # random weights said by the eval JSON only; weak AVE supervision
        "rand-weak": make_run(root, "rand-weak", {"ave": {"accuracy": .70}}, supervision="weak",
                              eval_random=True, joint=False),
    }


def results(runs, names, split="test"):
    res, errors, _ = R.load_results([runs[n] for n in names], split)
    assert not errors
    return res


def tables_by_id(runs, names):
    return {t.spec.id: t for t in R.build_tables(results(runs, names), "test")}


def cell(table, metric, column):
    row_cells = next(cells for row, cells in table.lines if row.label == metric)
    return row_cells[[c.label for c in table.columns].index(column)]


def check(c, ours, paper, diff):
    assert c.ours == pytest.approx(ours) and c.paper == pytest.approx(paper)
    assert c.diff == pytest.approx(diff)


def run_report(paths, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = R.report(list(paths), console=Console(file=out, width=400, color_system=None),
                    err_console=Console(file=err, width=400, color_system=None), **kw)
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- tables
def test_tables_i_to_v_numbers(runs):
    t = tables_by_id(runs, ["joint", "ave-only", "llp-only", "rand-weak"])
    assert list(t) == ["I", "II", "III", "IV", "V", "VI"]
    check(cell(t["I"], "segment · Audio", "joint"), 62.0, 61.6, 0.4)
    check(cell(t["I"], "event · Event@Avg", "joint"), 52.0, 53.9, -1.9)
    check(cell(t["I"], "segment · Type@Avg", "llp-only"), 63.0, 62.8, 0.2)
    check(cell(t["II"], "fully-supervised", "joint"), 80.0, 78.7, 1.3)
    check(cell(t["II"], "fully-supervised", "ave-only"), 77.4, 78.7, -1.3)
    check(cell(t["II"], "weakly-supervised", "rand-weak"), 70.0, 74.2, -4.2)
    assert cell(t["II"], "weakly-supervised", "joint").ours is None      # trained fully: "—"
    assert cell(t["II"], "fully-supervised", "joint").chance == pytest.approx(100 / 29)
    check(cell(t["III"], "cIoU", "joint"), 40.0, 39.16, 0.84)
    check(cell(t["III"], "AUC", "joint"), 42.0, 41.24, 0.76)
    check(cell(t["IV"], "Audio · Counting", "joint"), 70.0, 72.23, -2.23)
    check(cell(t["IV"], "All", "joint"), 77.0, 76.42, 0.58)
    check(cell(t["V"], "S4 · F-score", "joint"), 88.0, 87.1, 0.9)
    check(cell(t["V"], "MS3 · mIoU", "joint"), 55.0, 59.5, -4.5)
    check(cell(t["V"], "AVSS · mIoU", "joint"), 30.0, 37.4, -7.4)
    # runs side by side: only those with one of the table's tasks
    assert [c.label for c in t["I"].columns] == ["joint", "llp-only"]
    assert [c.label for c in t["II"].columns] == ["joint", "ave-only", "rand-weak"]
    assert [c.label for c in t["III"].columns] == ["joint"]


def test_table_vi_pairs_single_task_runs_with_joint(runs):
    vi = tables_by_id(runs, ["joint", "ave-only", "llp-only"])["VI"]
    wojt, joint = vi.columns
    assert (wojt.role, [r.label for r in wojt.results]) == (R.WOJT, ["ave-only", "llp-only"])
    assert (joint.role, joint.label) == (R.JOINT, "joint")
    assert [row.label for row, _ in vi.lines] == [
        "AVE · fully", "LLP · segment Type@Avg", "LLP · segment Event@Avg", "LLP · event Type@Avg",
        "LLP · event Event@Avg"]
    check(cell(vi, "AVE · fully", R.WOJT), 77.4, 77.4, 0.0)
    assert cell(vi, "AVE · fully", R.WOJT).run == "ave-only"
    check(cell(vi, "AVE · fully", "joint"), 80.0, 78.7, 1.3)
    check(cell(vi, "LLP · segment Type@Avg", R.WOJT), 63.0, 62.2, 0.8)
    check(cell(vi, "LLP · segment Type@Avg", "joint"), 61.67, 62.8, -1.13)
    head, rows = R._grid(vi)
    labels = [" ".join(h) for h, _ in head]
    assert labels[:2] == ["metric", "paper w/o jt"] and "paper joint" in labels
    ave = dict(zip(labels, (text for text, _, _ in rows[0])))
    assert ave["joint − w/o jt"] == "+2.60" and ave["paper joint − w/o jt"] == "+1.30"


def test_overlapping_single_task_runs_get_their_own_columns(tmp_path, runs):
    again = make_run(tmp_path, "ave-only-2", {"ave": {"accuracy": .76}}, joint=False)
    res = results(runs, ["ave-only", "joint"]) + R.load_results([again], "test")[0]
    vi = R.build_tables(res, "test")[-1]
    assert [(c.label, c.role) for c in vi.columns] == [
        ("w/o jt #1", R.WOJT), ("w/o jt #2", R.WOJT), ("joint", R.JOINT)]
    check(cell(vi, "AVE · fully", "w/o jt #2"), 76.0, 77.4, -1.4)


def test_paper_numbers_are_the_documented_ones():
    doc = need(SHARED / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("## What the paper reports"):]
    tables, joint = R.paper_tables()
    for spec in (*tables, joint):
        for row in spec.rows:
            assert row.key in BENCHMARKS[row.task].metric_keys, row
            for v in row.paper.values():
                # the dense tables: no number until one is read from the paper; open-set rows: none exists
                if not spec.verified or row.optional:
                    assert v is None, (spec.id, row.label, v)
                    continue
                assert f"{v:.1f}" in section or f"{v:.2f}" in section, (spec.id, row.label, v)


# ----------------------------------------------------------------------------- output formats
def test_rich_output_marks_random_weights_in_every_table_it_is_in(runs):
    code, out, err = run_report([runs[n] for n in ("joint", "ave-only", "rand-weak")])
    assert code == 0, err
    parts = re.split(r"Table ([IVX]+): ", out)
    assert parts[0].count(MARK) >= 2                          # banner and runs table
    sections = dict(zip(parts[1::2], parts[2::2]))
    assert [k for k, v in sections.items() if "rand-weak" in v] == ["II", "VI"]
    assert [k for k, v in sections.items() if MARK in v] == ["II", "VI"]
    assert "80.0" in out and "78.7" in out and "+1.3" in out and "-4.2" in out


def test_random_weight_single_task_run_gets_its_own_column(runs):
    vi = tables_by_id(runs, ["joint", "ave-only", "rand-weak"])["VI"]
    assert [(c.label, c.random_weights) for c in vi.columns] == [
        ("w/o jt #1", False), ("w/o jt #2", True), ("joint", False)]
    assert [row.label for row, _ in vi.lines] == ["AVE · fully", "AVE · weakly"]
    check(cell(vi, "AVE · weakly", "w/o jt #2"), 70.0, 73.5, -3.5)
    assert cell(vi, "AVE · weakly", "joint").ours is None


def test_markdown_csv_json(runs):
    paths = [runs[n] for n in ("joint", "ave-only", "llp-only", "rand-weak")]
    code, md, _ = run_report(paths, fmt="markdown")
    assert code == 0
    assert "| fully-supervised | 78.7 | 80.0 | +1.3 | 77.4 | -1.3 | — | — | 3.4 |" in md
    table_rows = [line for line in md.splitlines() if line.startswith("| AV · Avg")]
    assert table_rows == ["| AV · Avg | 76.96 | 75.00 | -1.96 |"]
    assert md.count(MARK) >= 3                               # banner, Table II and VI

    code, text, _ = run_report(paths, fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    r = next(r for r in rows if r["table"] == "II" and r["column"] == "joint" and r["ours"])
    assert (r["ours"], r["paper"], r["diff"], r["n"]) == ("80.0000", "78.7000", "1.3000", "10")
    rand = [r for r in rows if r["run"] == "rand-weak"]
    assert rand and all(r["marker"] == MARK and r["random_weights"] == "True" for r in rand)
    vi = next(r for r in rows if r["table"] == "VI" and r["metric"] == "AVE · fully"
              and r["role"] == R.WOJT)
    assert (vi["run"], vi["ours"], vi["paper"]) == ("ave-only", "77.4000", "77.4000")

    code, text, _ = run_report(paths, fmt="json")
    data = json.loads(text)
    assert data["split"] == "test" and data["scale"].startswith("percent")
    assert {r["name"]: r["random_weights"] for r in data["runs"]} == {
        "joint": False, "ave-only": False, "llp-only": False, "rand-weak": True}
    t3 = next(t for t in data["tables"] if t["id"] == "III")
    c = t3["rows"][0]["cells"][0]
    assert c["ours"] == pytest.approx(40.0) and c["diff"] == pytest.approx(0.84)
    t2 = next(t for t in data["tables"] if t["id"] == "II")
    assert [col["marker"] for col in t2["columns"]] == [None, None, MARK]


# ----------------------------------------------------------------------------- failures
def test_run_without_metrics_fails_clearly(tmp_path, runs):
    run = make_run(tmp_path, "fresh[wip]", {}, tasks=["ave"])   # brackets: no rich markup
    code, out, err = run_report([runs["joint"], run])
    assert code == 1 and out == ""
    assert "'fresh[wip]'" in err and "no metrics for split 'test'" in err
    assert f"avu eval {run}" in err
    code, _, err = run_report([runs["joint"]], split="val")
    assert code == 1 and "no metrics for split 'val'" in err
    code, _, err = run_report([tmp_path / "nowhere"])
    assert code == 1 and "no such run directory" in err


def test_eval_json_checks(tmp_path):
    run = make_run(tmp_path, "pct", {"ave": {"accuracy": 78.7}})
    with pytest.raises(RunDirError, match="not a fraction"):
        load_evals(load_run(run), "test")
    run = make_run(tmp_path, "other-split", {"ave": {"accuracy": .5}}, split="val")
    with pytest.raises(RunDirError, match=r"metrics for split val \(--split\)"):
        load_evals(load_run(run), "test")
    code, _, err = run_report([run], fmt="xml")
    assert code == 2 and "unknown format" in err


def test_missing_task_eval_is_a_dash_and_a_warning(tmp_path):
    run = make_run(tmp_path, "partial", {"avs-s4": {"miou": .8, "fscore": .9}},
                   tasks=["avs-s4", "avs-ms3"])
    code, out, err = run_report([run])
    assert code == 0 and "trained on avs-ms3 but has no eval/test/avs-ms3.json" in err
    t5 = R.build_tables(R.load_results([run], "test")[0], "test")[0]
    assert cell(t5, "MS3 · mIoU", "partial").ours is None
    assert "MS3 · mIoU" in out and "—" in out


def test_read_log_skips_a_torn_last_line(runs):
    records, bad = read_log(load_run(runs["ave-only"]))
    assert bad == 1 and {r["kind"] for r in records} == {"train", "val"}


# ----------------------------------------------------------------------------- figures
def _write_wav(path: Path, seconds: int = 1, sr: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(sr)
        w.writeframes((np.sin(np.arange(seconds * sr) / 5) * 3000).astype("<i2").tobytes())


def test_plots_written_as_png(tmp_path, runs):
    from PIL import Image

    from pipeline.store import create

    # AVS S4 store: image-sequence sources that decode, masks as ground truth
    frames = []
    for i in range(2):
        names = []
        for t in range(5):
            p = tmp_path / f"clip{i}_{t}.png"
            img = np.zeros((48, 64, 3), np.uint8)
            img[..., 1], img[..., 2] = np.arange(64) * 3 + 40 * t, 80 * i + 60
            Image.fromarray(img).save(p)
            names.append(str(p))
        _write_wav(tmp_path / f"clip{i}.wav", seconds=5)
        frames.append({"frames": names, "audio": str(tmp_path / f"clip{i}.wav")})
    s4 = create(tmp_path / "s4.zarr", ["a", "b"], {"audio": ((5, 4), "float16")},
                {"sources": frames, "T": 5})
    masks = np.zeros((2, 5, 32, 32), np.uint8)
    masks[:, :, 8:20, 10:24] = 45
    s4.put("masks", masks)
    # VGG-SS store: sources that cannot be read, boxes as ground truth
    vg = create(tmp_path / "vggss.zarr", ["x", "y", "z"], {"audio": ((10, 4), "float16")},
                {"sources": [str(tmp_path / "gone.mp4")] * 3, "T": 10})
    vg.put("boxes", np.tile(np.array([[.1, .2, .6, .7], [0, 0, 0, 0]], np.float32), (3, 1, 1)))

    run = make_run(tmp_path, "viz", {t: JOINT_METRICS[t] for t in ("llp", "vggss", "avs-s4", "music-avqa")},
                   stores={"avs-s4": str(tmp_path / "s4.zarr"), "vggss": "../vggss.zarr"},
                   extra={"llp": {"per_class": {"Speech": .7, "Dog": .4}}}, random_weights=True)
    rng = np.random.default_rng(0)
    np.savez(run / "eval/test/vggss.npz", clip_index=np.arange(3), heatmap=rng.normal(size=(3, 7, 7)))
    np.savez(run / "eval/test/avs-s4.npz", clip_index=np.array([1, 0]),
             mask_logits=rng.normal(size=(2, 5, 32, 32)).astype(np.float32))

    out = tmp_path / "figs"
    code, _, err = run_report([run, runs["llp-only"]], fmt="json", plots=out)
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert names == {"curves_llp.png", "curves_vggss.png", "curves_avs-s4.png", "curves_music-avqa.png",
                     "llp_per_class.png", "music-avqa_bars.png", "viz_vggss.png", "viz_avs-s4.png"}
    for p in out.iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, p.name
    assert "failed" not in err and "wrote 8 figure(s)" in err


def test_plotted_boxes_skip_padding_and_boxes_of_no_area():
    from matplotlib.figure import Figure

    from trainer.plots import _boxes

    ax = Figure().add_subplot()
    boxes = [[0.1, 0.1, 0.5, 0.6], [0, 0, 0, 0], [0.5, 0.5, -2.88e16, 0.6], [0.2, 0.3, 1.7, 0.9]]
    _boxes(ax, np.array(boxes), 224, 224)
    drawn = [(p.get_x(), p.get_width()) for p in ax.patches]
    assert len(drawn) == 2 and all(w > 0 for _, w in drawn)     # the garbage box fills nothing: not drawn
    assert drawn[1][1] == pytest.approx(0.8 * 224)              # clipped at the frame's edge


# ----------------------------------------------------------------------------- dense tables
DENSE_UNAV = {f"mAP@{t / 10:g}": .9 - t / 20 for t in range(1, 10)} | {"avg": .55}
DENSE_ANET = {f"mAP@{round(t, 2):g}": .5 for t in np.linspace(0.5, 0.95, 10)} | {"avg": .42}


def test_dense_tables_come_after_table_vi_with_unverified_paper_numbers(tmp_path, runs):
    """One table per dense benchmark, after Table VI; the paper column is "–" with the
    not-verified note, Δ is blank, chance beside ours; open-set rows only where a run has them."""
    seen = {f"{k}_{g}": v for k, v in DENSE_UNAV.items() for g in ("seen", "unseen")}
    dense = make_run(tmp_path, "dense", {"unav100": DENSE_UNAV | seen, "activitynet": DENSE_ANET}, joint=False,
                     extra={"unav100": {"chance": {"avg": .12, "avg_unseen": .05}}})
    res = results(runs, ["joint", "ave-only"]) + R.load_results([dense], "test")[0]
    tables = R.build_tables(res, "test")
    ids = [t.spec.id for t in tables]
    assert ids[ids.index("VI"):] == ["VI", "VII", "VIII"]
    vii = next(t for t in tables if t.spec.id == "VII")
    assert [row.label for row, _ in vii.lines] == [f"mAP@{t / 10:g}" for t in range(1, 10)] + [
        "Avg", "seen · mAP@0.5", "seen · Avg", "unseen · mAP@0.5", "unseen · Avg"]
    c = cell(vii, "Avg", "dense")
    assert c.ours == pytest.approx(55.0) and c.paper is None and c.diff is None and c.chance == pytest.approx(12.0)
    assert cell(vii, "unseen · Avg", "dense").chance == pytest.approx(5.0)
    assert any("NOT VERIFIED" in n for n in vii.notes)
    viii = next(t for t in tables if t.spec.id == "VIII")
    assert [row.label for row, _ in viii.lines][-1] == "Avg" and len(viii.lines) == 11   # no open-set rows
    code, out, _ = run_report([runs["joint"], dense], fmt="markdown")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("| Avg |") and "55.00" in x)
    assert line.split(" | ")[1:4] == ["–", "55.00", "—"]
    doc = json.loads(run_report([dense], fmt="json")[1])
    row = next(r for t in doc["tables"] if t["id"] == "VII" for r in t["rows"] if r["key"] == "avg")
    assert row["paper"] == {"": None} and row["cells"][0]["ours"] == pytest.approx(55.0)
    assert run_report([dense], fmt="csv")[0] == 0
