"""Stage two's benchmarks and the model's heads: choose by name from the two dicts below.

    spec = BENCHMARKS["avss"]                    # everything stage two knows about AVSS (spec.py)
    model = build_model(cfg)                     # trainer/runtime.py: AVUnified with every head of HEADS
    out = model(batch, spec.head, vocab_emb, valid_ids, **spec.head_options)
    spec.loss(supervision)(out, batch).backward();  spec.predict(out, batch);  spec.score(preds, store, True)

A head module has `Head(cfg)` (an nn.Module with `uses_patches`), `loss` and `decode`; a
benchmark's file holds its Benchmark next to the head it runs on. Adding a benchmark is its
stage-one adapter (pipeline/datasets/), its Benchmark and one line in BENCHMARKS; the order of
BENCHMARKS is the order of `--tasks all` and of every listing.
"""

from trainer.tasks import ave, avqa, avs, dense, dense_benchmarks, llp, vggss
from trainer.tasks.spec import Benchmark

HEADS = {"ave": ave, "llp": llp, "vggss": vggss, "avs": avs, "avqa": avqa, "dense": dense}
BENCHMARKS: dict[str, Benchmark] = {
    "ave": ave.AVE,
    "llp": llp.LLP,
    "vggss": vggss.VGGSS,
    "avs-s4": avs.S4,
    "avs-ms3": avs.MS3,
    "avss": avs.AVSS,
    "music-avqa": avqa.MUSIC_AVQA,
    "unav100": dense_benchmarks.UNAV100,
    "activitynet": dense_benchmarks.ACTIVITYNET,
    "desed": dense_benchmarks.DESED,
}
