"""Offline: for each blend weight, validation mAP / micro-F1 / macro-F1 (global threshold) and test F1s at
the auto rule (choose_threshold_rule on validation) and test mAP. python blend_weights_rule.py RUN"""
import sys

import numpy as np

from mlsupcon.evaluation import choose_threshold_rule, tune_global_threshold, tune_shrunk_thresholds
from mlsupcon.evaluation.metrics import macro_f1, micro_f1
from mlsupcon.evaluation.metrics import mean_average_precision as mAP

z = np.load(f"{sys.argv[1]}/blend_parts.npz")
yv, av, bv, yt, at, bt = (z[k] for k in ("validation_y", "validation_a", "validation_b", "test_y", "test_a", "test_b"))
for w in np.linspace(0, 1, 11):
    sv, st = w * av + (1 - w) * bv, w * at + (1 - w) * bt
    g = tune_global_threshold(yv, sv)
    rule, _ = choose_threshold_rule(yv, sv)
    t = g if rule == "tune" else tune_shrunk_thresholds(yv, sv, global_threshold=g)
    val = f"val mAP {mAP(yv, sv) * 100:.2f} micro {micro_f1(yv, sv, g) * 100:.2f} macro {macro_f1(yv, sv, g) * 100:.2f}"
    test = f"{micro_f1(yt, st, t) * 100:.2f} / {macro_f1(yt, st, t) * 100:.2f} / {mAP(yt, st) * 100:.2f}"
    print(f"w={w:.1f} {val} | {rule:14s} test {test}")
