"""What choose_threshold_rule picks for a saved run, and the test F1s of each rule: python rule_sim.py RUN..."""
import json
import sys

import numpy as np
import yaml

import mlsupcon
from mlsupcon.data import load_dataset
from mlsupcon.evaluation import choose_threshold_rule, tune_global_threshold, tune_shrunk_thresholds
from mlsupcon.evaluation.metrics import macro_f1, micro_f1

for run in sys.argv[1:]:
    m = mlsupcon.load(run)
    cfg = yaml.safe_load(open(f"{run}/config.yaml"))
    ds = load_dataset(cfg["dataset"], **(cfg.get("dataset_options") or {}))
    sc = {}
    for split in ("validation", "test"):
        texts = list(ds.splits[split].inputs)
        scores = np.asarray(m.predict_proba(texts, batch_size=256, progress=False))
        sc[split] = (ds.splits[split].labels.toarray(), scores)
    (yv, sv), (yt, st) = sc["validation"], sc["test"]
    rule, table = choose_threshold_rule(yv, sv)
    g = tune_global_threshold(yv, sv)
    pl = tune_shrunk_thresholds(yv, sv, global_threshold=g)
    print(f"{run}: chose {rule}; cv {json.dumps({k: v for k, v in table.items() if k != 'folds'})}")
    f1s = [f"{micro_f1(yt, st, t) * 100:.2f}/{macro_f1(yt, st, t) * 100:.2f}" for t in (g, pl)]
    print(f"   test global {f1s[0]}  per-label {f1s[1]}", flush=True)
