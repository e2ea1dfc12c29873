"""Offline: blend in probability space (the run's), in logit space, and of per-label z-scored logits
(mean/std of each label's logits on validation), each weight chosen on validation mAP, then test mAP.
python blend_space.py RUN... (each RUN with the blend_parts.npz of blend_parts.py)"""
import sys

import numpy as np

from mlsupcon.evaluation.metrics import mean_average_precision as mAP

KEYS = ("validation_y", "validation_a", "validation_b", "test_y", "test_a", "test_b")


def logit(p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def zscore(x, ref):
    return (x - ref.mean(0)) / (ref.std(0) + 1e-6)


for run in sys.argv[1:]:
    z = np.load(f"{run}/blend_parts.npz")
    yv, av, bv, yt, at, bt = (z[k] for k in KEYS)
    la_v, lb_v, la_t, lb_t = logit(av), logit(bv), logit(at), logit(bt)
    spaces = {"prob": (av, bv, at, bt), "logit": (la_v, lb_v, la_t, lb_t),
              "z-logit": (zscore(la_v, la_v), zscore(lb_v, lb_v), zscore(la_t, la_v), zscore(lb_t, lb_v))}
    grid = np.linspace(0, 1, 11)
    line = [run.split("/")[-1]]
    for name, (a1, b1, a2, b2) in spaces.items():
        vals = [mAP(yv, w * a1 + (1 - w) * b1) for w in grid]
        w = grid[int(np.argmax(vals))]
        line.append(f"{name}: w={w:.1f} val {max(vals) * 100:.2f} test {mAP(yt, w * a2 + (1 - w) * b2) * 100:.2f}")
    print(" | ".join(line), flush=True)
