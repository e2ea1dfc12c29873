"""Helpers for the end-to-end pipeline / CLI tests: tiny generated datasets and run checks.

Everything here is generated on the fly (never real MIMIC or COCO data) and small enough
that a one-epoch run on it takes a second or two on a CPU.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlsupcon.training.config import TrainConfig

#: The metrics every run must report (keys of metrics.json), all probabilities in [0, 1].
REQUIRED_METRICS = ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "threshold")

# Metrics documented (mlsupcon.evaluation.metrics, "Undefined metrics") as NaN when the split
# has nothing to average over; every other one must be a finite float.
NAN_ALLOWED = {"macro_f1", "micro_auc", "macro_auc", "map"}

#: Tiny encoders (YAML encoder_options) per modality.
TINY_MLP = {"hidden_dims": [32]}
TINY_CNN = {"embed_dim": 16, "num_filters": 16, "kernel_size": 3, "max_length": 64}
TINY_RESNET = {"preset": "small", "image_size": 32}

# Words from which generated text examples are built: each label has its own words so a
# model can (but, in one epoch, need not) learn something.
_LABEL_WORDS = {
    "lang::python": ["python", "interpreter", "pip", "module"],
    "lang::c": ["compiler", "pointer", "header", "gcc"],
    "use::editing": ["editor", "text", "cursor", "buffer"],
    "use::viewing": ["viewer", "display", "image", "window"],
    "role::program": ["binary", "command", "program", "tool"],
}
_FILLER = ["the", "a", "with", "for", "and", "small", "fast", "simple", "package", "data"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``mlsupcon.cli.main.main(argv)`` in-process, output captured: (exit code, stdout, stderr)."""
    from mlsupcon.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


#: A one-line epoch summary of --no-progress (mlsupcon.training.progress), e.g. "mlsupcon: [contrastive] epoch 1/3 …".
EPOCH_LINE = re.compile(r"^mlsupcon: \[[\w-]+\] epoch \d+/\d+ ")


def report_lines(err: str) -> list[str]:
    """The lines of stderr other than the epoch summaries printed before a run stopped."""
    return [line for line in err.strip().splitlines() if not EPOCH_LINE.match(line)]


def assert_user_error(rc: int, err: str, *needles: str) -> str:
    """Exit code 2, exactly one stderr line starting with 'mlsupcon: error:' (besides the epoch
    summaries of the epochs that had finished), no traceback."""
    assert rc == 2, f"exit code {rc}, stderr:\n{err}"
    assert "Traceback" not in err
    lines = report_lines(err)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("mlsupcon: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write_yaml(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _text_examples(n: int, rng: np.random.Generator) -> list[tuple[str, list[str]]]:
    names = list(_LABEL_WORDS)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        labels = sorted(rng.choice(names, size=k, replace=False).tolist())
        words = []
        for lab in labels:
            words += rng.choice(_LABEL_WORDS[lab], size=3).tolist()
        words += rng.choice(_FILLER, size=int(rng.integers(3, 9))).tolist()
        rng.shuffle(words)
        out.append((" ".join(words), labels))
    return out


def write_jsonl(path: Path, n: int = 90, seed: int = 0) -> Path:
    """A generic JSONL text dataset with explicit train/validation/test splits (60/15/15 %)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (text, labels) in enumerate(_text_examples(n, rng)):
        split = "train" if i % 7 < 5 else ("validation" if i % 7 == 5 else "test")
        rows.append(json.dumps({"id": f"doc{i}", "text": text, "labels": labels, "split": split}))
    path.write_text("\n".join(rows) + "\n")
    return path


# ICD-9 codes (diagnoses and one procedure) for the MIMIC-III style fixture.
_ICD9 = ["428.0", "428.1", "401.9", "584.9", "250.00", "96.04", "E812.0"]
# ICD-10-CM and ICD-10-PCS codes for the MIMIC-IV style fixture.
_ICD10_DIAG = ["I50.9", "I10.", "D70.1", "U07.1", "E11.9"]
_ICD10_PROC = ["0DTJ4ZZ", "02HV33Z"]

_NOTE_WORDS = ["patient", "admitted", "with", "history", "of", "chf", "renal", "failure", "hypertension",
               "diabetes", "pneumonia", "discharge", "stable", "follow", "up", "echo", "ef", "lasix"]


def _note(rng: np.random.Generator, codes: list[str]) -> str:
    words = rng.choice(_NOTE_WORDS, size=int(rng.integers(8, 30))).tolist()
    # A code-specific token, so the labels are not pure noise.
    words += [f"code{c.replace('.', '')}" for c in codes]
    rng.shuffle(words)
    return " ".join(words)


def write_mimic_caml(d: Path, sizes=(48, 16, 16), seed: int = 0) -> Path:
    """caml-mimic style ``{train,dev,test}_full.csv`` (SUBJECT_ID, HADM_ID, TEXT, LABELS, length)."""
    import pandas as pd

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hadm = 1000
    for split, n in zip(("train", "dev", "test"), sizes):
        rows = []
        for i in range(n):
            codes = sorted(rng.choice(_ICD9, size=int(rng.integers(1, 4)), replace=False).tolist())
            hadm += 1
            rows.append((i + 1, hadm, _note(rng, codes), ";".join(codes)))
        df = pd.DataFrame(rows, columns=["SUBJECT_ID", "HADM_ID", "TEXT", "LABELS"])
        df["length"] = df["TEXT"].str.split().str.len()
        df.to_csv(d / f"{split}_full.csv", index=False)
    return d


def write_mimic_repro(d: Path, sizes=(48, 16, 16), seed: int = 0) -> Path:
    """medical-coding-reproducibility style ``mimiciv_icd10.feather`` + ``mimiciv_icd10_split.feather``."""
    import pandas as pd

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids, texts, targets, diags, procs, splits = [], [], [], [], [], []
    for split, n in zip(("train", "val", "test"), sizes):
        for _ in range(n):
            diag = sorted(rng.choice(_ICD10_DIAG, size=int(rng.integers(1, 3)), replace=False).tolist())
            proc = [str(rng.choice(_ICD10_PROC))] if rng.random() < 0.4 else []
            ids.append(100 + len(ids))
            texts.append(_note(rng, diag + proc))
            targets.append(diag + proc)
            diags.append(diag)
            procs.append(proc)
            splits.append(split)
    data = pd.DataFrame({
        "_id": ids, "subject_id": list(range(len(ids))), "text": texts, "target": targets,
        "icd10_diag": diags, "icd10_proc": procs,
        "num_words": [len(t.split()) for t in texts], "num_targets": [len(t) for t in targets],
    })
    data.to_feather(d / "mimiciv_icd10.feather")
    pd.DataFrame({"_id": ids, "split": splits}).to_feather(d / "mimiciv_icd10_split.feather")
    return d


_COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]


def write_coco(root: Path, n_images: int = 40, seed: int = 0) -> Path:
    """A COCO ``instances_*.json`` + small PNG images (sizes vary; some greyscale); returns the JSON path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        iid = i + 1
        w, h = int(rng.integers(16, 40)), int(rng.integers(16, 40))
        img = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
        if i % 5 == 1:
            img = img.convert("L")
        fn = f"{iid:012d}.png"
        img.save(root / "images" / fn)
        images.append({"id": iid, "file_name": fn, "width": w, "height": h})
        cats = rng.choice([c["id"] for c in _COCO_CATEGORIES], size=int(rng.integers(1, 4)), replace=False)
        for c in cats.tolist():
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": int(c), "bbox": [0, 0, 4, 4]})
    p = root / "annotations" / "instances_tiny.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": _COCO_CATEGORIES}))
    return p


def expected_config(yaml_values: dict[str, Any], flag_values: dict[str, Any],
                    nested: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What config.yaml must hold: the defaults, then the named dataset's preset, then the YAML
    file (mappings merged into the preset's option by option), then the CLI flags.

    Built independently of ``load_config`` (from the dataclass defaults and ``PRESETS``) so that
    a bug in the merge shows up as a difference. A YAML file was given: ``auto`` is false.
    """
    from mlsupcon.training.presets import PRESETS

    expected = TrainConfig().to_dict()
    dataset = flag_values.get("dataset", yaml_values.get("dataset"))
    preset = json.loads(json.dumps(PRESETS.get(dataset, {})))
    for options, owner in (("encoder_options", "encoder"), ("view_options", "encoder"), ("loss_options", "loss")):
        if flag_values.get(owner, yaml_values.get(owner, preset.get(owner))) != preset.get(owner):
            preset.pop(options, None)  # the preset's options of another encoder / loss
    expected.update(preset, preset=dataset if preset else None, auto=False)
    for key, value in yaml_values.items():
        below = expected.get(key)
        expected[key] = {**below, **value} if isinstance(below, dict) and isinstance(value, dict) else value
    expected.update(flag_values)
    for key, extra in (nested or {}).items():
        expected[key] = {**expected[key], **extra}
    return json.loads(json.dumps(expected))  # tuples → lists, as YAML gives them back


def check_run_folder(run: Path) -> dict[str, Any]:
    """Asserts the artefacts of a finished run; returns metrics.json."""
    metrics_path = run / "metrics.json"
    assert metrics_path.is_file(), f"no metrics.json in {run}"
    m = json.loads(metrics_path.read_text())
    for key in REQUIRED_METRICS:
        assert key in m, f"metrics.json lacks {key!r}: {sorted(m)}"
        v = m[key]
        assert isinstance(v, float) or isinstance(v, int), f"{key} = {v!r} is not a number"
        if key in NAN_ALLOWED and math.isnan(v):
            continue
        assert math.isfinite(v) and 0.0 <= v <= 1.0, f"{key} = {v!r} is not in [0, 1]"
    assert 0.0 < m["threshold"] < 1.0
    assert m["split"] == "test" and m["num_test"] > 0
    assert "validation" in m and "micro_f1" in m["validation"]
    assert (run / "config.yaml").is_file()
    assert (run / "environment.json").is_file()
    assert (run / "model" / "weights.safetensors").is_file()
    assert (run / "model" / "weights.safetensors").stat().st_size > 0
    model_json = json.loads((run / "model" / "model.json").read_text())
    assert model_json["format"] == "mlsupcon-model/2"
    assert model_json["threshold"] == m["threshold"]
    logs = list((run / "logs").glob("*/metrics.csv"))
    assert logs, f"no logs/<stage>/metrics.csv in {run}"
    assert all(p.stat().st_size > 0 for p in logs)
    return m


def read_config_yaml(run: Path) -> dict[str, Any]:
    return yaml.safe_load((run / "config.yaml").read_text())


def metric_numbers(m: dict, skip=("timings",)) -> dict:
    """Every number of a metrics.json (nested keys joined by '/'), NaN made comparable, timings left out."""
    out = {}
    for key, value in m.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in metric_numbers(value, skip).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = "nan" if isinstance(value, float) and math.isnan(value) else value
    return out
