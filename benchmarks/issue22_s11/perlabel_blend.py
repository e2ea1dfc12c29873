"""Offline: per-label blend weights (validation AP per label, shrunk towards the global weight by the
label's validation positives) against the run's global weight. python perlabel_blend.py RUN [k...]"""
import sys

import numpy as np
from sklearn.metrics import average_precision_score

from mlsupcon.evaluation.metrics import mean_average_precision

run = sys.argv[1]
z = np.load(f"{run}/blend_parts.npz")
yv, av, bv = z["validation_y"], z["validation_a"], z["validation_b"]
yt, at, bt = z["test_y"], z["test_a"], z["test_b"]
grid = np.linspace(0, 1, 11)
# the run's rule: global weight maximising validation mAP (no guard here)
vm = [mean_average_precision(yv, w * av + (1 - w) * bv) for w in grid]
wg = grid[int(np.argmax(vm))]
print(f"global w={wg:.1f}: test mAP {mean_average_precision(yt, wg * at + (1 - wg) * bt) * 100:.2f}")
c = yv.shape[1]
own = np.full(c, wg)
npos = yv.sum(0)
for j in range(c):
    if 0 < npos[j] < len(yv):
        aps = [average_precision_score(yv[:, j], w * av[:, j] + (1 - w) * bv[:, j]) for w in grid]
        best = max(aps)
        own[j] = max(w for w, ap in zip(grid, aps) if ap >= best - 1e-12)
for k in [float(x) for x in (sys.argv[2:] or ["0", "3", "10", "30"])]:
    w = np.where(npos > 0, (npos * own + k * wg) / (npos + k), wg)
    test_map = mean_average_precision(yt, w * at + (1 - w) * bt) * 100
    print(f"per-label k={k:g}: test mAP {test_map:.2f} (mean w {w.mean():.2f})")
