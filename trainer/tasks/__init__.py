"""One module per benchmark, each with `Head(cfg)`, `loss(outputs, batch)`, `decode(outputs)`.

    model = AVUnified(cfg, {name: task.Head(cfg) for name, task in TASKS.items()})
    out = model(batch, name, vocab_emb, valid_ids)
    TASKS[name].loss(out, batch).backward();  TASKS[name].decode(out)

"avs" covers S4, MS3 (valid_ids None: binary masks) and AVSS (valid_ids: 71 class tokens).
"""

from trainer.tasks import ave, avqa, avs, llp, vggss

TASKS = {"ave": ave, "llp": llp, "vggss": vggss, "avs": avs, "avqa": avqa}
