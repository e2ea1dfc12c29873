"""Each part of a blended run alone and blended, on validation and test; saves RUN/blend_parts.npz
(labels and both parts' scores per split) for the offline blend scripts. python blend_parts.py RUN"""
import sys

import numpy as np
import torch
import yaml

import mlsupcon
from mlsupcon.data import load_dataset
from mlsupcon.evaluation.metrics import macro_f1, mean_average_precision, micro_f1
from mlsupcon.evaluation.thresholds import tune_global_threshold

run = sys.argv[1]
clf = mlsupcon.load(run).classifier
head = clf.head
cfg = yaml.safe_load(open(f"{run}/config.yaml"))
ds = load_dataset(cfg["dataset"], **(cfg.get("dataset_options") or {}))
out = {}
for split in ("validation", "test"):
    texts = list(ds.splits[split].inputs)
    y = ds.splits[split].labels.toarray()
    parts = {"a": [], "b": []}
    with torch.no_grad():
        for i in range(0, len(texts), 512):
            h = clf.encoder(clf.preprocess(texts[i:i + 512]))
            parts["a"].append(torch.sigmoid(head.head_a(h)).numpy())
            parts["b"].append(torch.sigmoid(head.head_b(h)).numpy())
    out[split] = (y, np.concatenate(parts["a"]), np.concatenate(parts["b"]))
w = head.weight
yv, av, bv = out["validation"]
for split, (y, a, b) in out.items():
    print(f"{split}: model p mean {a.mean():.3f} std {a.std():.3f}, linear p mean {b.mean():.3f} std {b.std():.3f}; "
          f"per-label std (median) model {np.median(a.std(0)):.3f} linear {np.median(b.std(0)):.3f}")
    for name, s, s_val in (("model", a, av), ("linear", b, bv), (f"blend w={w:.1f}", w * a + (1 - w) * b,
                                                                  w * av + (1 - w) * bv)):
        t = tune_global_threshold(yv, s_val)
        print(f"  {name:12s} mAP {mean_average_precision(y, s) * 100:.2f} micro {micro_f1(y, s, t) * 100:.2f} "
              f"macro {macro_f1(y, s, t) * 100:.2f}")
np.savez_compressed(f"{run}/blend_parts.npz",
                    **{f"{s}_{k}": v for s, (y, a, b) in out.items() for k, v in (("y", y), ("a", a), ("b", b))})
