"""How much do label names carry? Untrained cosine between MiniLM embeddings of each text and of each
label name, against a trained run's scores, on the test split (issue 22, session 9).

    python benchmarks/small_data/zeroshot.py RUN [MAX_TRAIN_EXAMPLES]

RUN: a run of ``frozen_lin.yaml`` (frozen MiniLM, ``hidden_dims: []``, linear head); its encoder
embeds the texts and the names. Prints test mAP of the names alone and of the run, on the labels
with and without a training example.
"""

import sys

import numpy as np

import mlsupcon
from mlsupcon.data.registry import load_dataset
from mlsupcon.evaluation.metrics import mean_average_precision, per_label_average_precision
from mlsupcon.models.heads import label_name_text


def main() -> None:
    run, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500
    ds = load_dataset("debtags", max_train_examples=n)
    model = mlsupcon.load(run)
    test = ds.splits["test"]
    texts = model.embed(list(test.inputs), space="encoder", progress=False)
    names = model.embed([label_name_text(lab) for lab in ds.label_names], space="encoder", progress=False)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    zero_shot = unit(texts) @ unit(names).T
    trained = model.predict_proba(list(test.inputs), progress=False)
    y = test.label_array()
    print(f"test mAP: names alone {mean_average_precision(y, zero_shot):.4f}, "
          f"trained run {mean_average_precision(y, trained):.4f}")
    seen = ds.splits["train"].label_array().sum(0) > 0
    present = y.sum(0) > 0
    ap_names, ap_run = per_label_average_precision(y, zero_shot), per_label_average_precision(y, trained)
    for what, mask in (("with training examples", seen & present), ("without", ~seen & present)):
        print(f"{mask.sum()} test labels {what}: names {np.nanmean(ap_names[mask]):.4f}, "
              f"run {np.nanmean(ap_run[mask]):.4f}")


if __name__ == "__main__":
    main()
