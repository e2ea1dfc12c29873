"""python tab.py RUN... : test micro/macro/mAP, validation mAP, per-label-threshold F1s, epochs, blend."""
import json
import pathlib
import re
import statistics as st
import sys

rows = {}
for r in sys.argv[1:]:
    p = pathlib.Path(r)
    if not (p / "metrics.json").exists():
        print(f"{p.name:28s} (no metrics)")
        continue
    m = json.loads((p / "metrics.json").read_text())
    v = m.get("validation", {})
    bl = (m.get("chosen_on_validation") or {}).get("blend_linear", {}).get("weight_of_model")
    t = m.get("timings", {}).get("total_s", 0)
    vals = [m["micro_f1"]*100, m["macro_f1"]*100, m["map"]*100, v.get("map", float("nan"))*100,
            m.get("micro_f1_per_label_thresholds", 0)*100, m.get("macro_f1_per_label_thresholds", 0)*100]
    print(f"{p.name:28s} " + " ".join(f"{x:6.2f}" for x in vals) + f"  w={bl} {t:5.0f}s")
    key = re.sub(r"-s\d+$", "", p.name)
    rows.setdefault(key, []).append(vals)
print("mean ± std (micro, macro, mAP, val mAP, micro PL, macro PL)")
for k, vs in rows.items():
    if len(vs) > 1:
        cols = list(zip(*vs))
        print(f"{k:28s} n={len(vs)} " + " ".join(f"{st.mean(c):6.2f}±{st.stdev(c):4.2f}" for c in cols))
