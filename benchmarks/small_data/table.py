"""Mean ± std over seeds of run folders (metrics.json) or SetFit JSON files, as a Markdown table.

    python benchmarks/small_data/table.py "LABEL=runs/g3/names3_500_s?" "SetFit=runs/g3/setfit_500_s?.json"
"""

import glob
import json
import sys

import numpy as np


def _cell(metrics: list[dict], key: str) -> str:
    v = np.array([100 * m[key] for m in metrics if key in m])
    if len(v) == 0:
        return ""
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _load(pattern: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path if path.endswith(".json") else path + "/metrics.json") as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            pass  # a run still going: no metrics.json yet
    return out


def main(rows: list[str]) -> None:
    print("| row | seeds | micro-F1 | macro-F1 | mAP | per-label thresholds: micro / macro | s per run |")
    print("|---|---|---|---|---|---|---|")
    for arg in rows:
        label, _, pattern = arg.partition("=")
        ms = _load(pattern)
        if not ms:
            print(f"| {label} | 0 | | | | | |")
            continue
        times = [m.get("timings", {}) for m in ms]
        secs = [t.get("total_s") or (t.get("train_s", 0) + t.get("score_validation_and_test_s", 0)) for t in times]
        per_label = f"{_cell(ms, 'micro_f1_per_label_thresholds')} / {_cell(ms, 'macro_f1_per_label_thresholds')}"
        print(f"| {label} | {len(ms)} | {_cell(ms, 'micro_f1')} | {_cell(ms, 'macro_f1')} | {_cell(ms, 'map')} | "
              f"{per_label} | {np.median(secs):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
