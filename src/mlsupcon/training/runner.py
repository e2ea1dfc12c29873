"""One run, from a config to ``metrics.json``: data → encoder → method → threshold → metrics.

Artefacts written to ``config.output``:

* ``config.yaml`` — the resolved configuration; ``environment.json`` — package and library versions;
* ``metrics.json`` — test metrics (and validation metrics under ``"validation"``), the threshold,
  the run's notes (``"notes"``: e.g. a stage that reached its epoch cap while still improving);
* ``model/weights.safetensors`` + ``model/model.json`` — everything ``mlsupcon evaluate`` needs,
  loadable without executing code (:mod:`mlsupcon.inference.storage`);
* ``checkpoints/<stage>/last.ckpt`` — Lightning checkpoints, written atomically every
  ``checkpoint_every_n_steps`` steps and after every epoch, with the RNG states and the position
  in the epoch; ``checkpoints/<stage>/done.json`` once a stage has finished (``--resume``);
* ``logs/<stage>/metrics.csv`` — curves;
* ``embeddings_test.npz`` — encoder embeddings of (up to 2,000) test examples, for plots.

A folder holds exactly one run: a new run needs a new or empty folder, ``--resume`` (continue
it) or ``--overwrite`` (delete the earlier run's artefacts first); ``metrics.json`` and
``model/`` appear only complete, ``metrics.json`` last (:mod:`mlsupcon.runs.folder`).

The training itself is the method's (:mod:`mlsupcon.training.methods`); the stages it fits are
checkpointed by :mod:`mlsupcon.training.stages`. What happens on failures (bad data, NaN losses,
out of memory, a killed job, corrupt files) and what ``--resume`` restores: docs/failures.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlsupcon.config.auto import apply_auto_settings
from mlsupcon.config.schema import TrainConfig
from mlsupcon.config.validation import THRESHOLD_RULES
from mlsupcon.data import MultiLabelDataset, load_dataset
from mlsupcon.evaluation import (
    choose_threshold_rule,
    compute_metrics,
    macro_f1,
    mean_average_precision,
    micro_f1,
    tune_global_threshold,
    tune_global_threshold_macro_f1,
    tune_shrunk_thresholds,
)
from mlsupcon.evaluation.thresholds import RULE_CV_FOLDS
from mlsupcon.inference.scoring import predict_scores
from mlsupcon.inference.storage import save_classifier
from mlsupcon.models import Classifier, build_encoder
from mlsupcon.runs.folder import RESUME_FREE_KEYS, check_run_output, is_primary_process, run_lock, start_run_folder
from mlsupcon.runs.io import atomic_dir, atomic_savez, write_json
from mlsupcon.training.batches import make_loader
from mlsupcon.training.input_checks import check_training_data
from mlsupcon.training.logs import quiet_lightning
from mlsupcon.training.methods import FitContext, get_method
from mlsupcon.training.rng import seed_everything
from mlsupcon.training.run_config import check_method_options, validate_run_config
from mlsupcon.training.stages import RunState

__all__ = ["RESUME_FREE_KEYS", "EMBEDDINGS_KEPT", "make_encoder", "prepare_encoder", "run_training", "export_model",
           "evaluate_run"]

EMBEDDINGS_KEPT = 2000


def make_encoder(cfg: TrainConfig, ds: MultiLabelDataset):
    """The config's encoder, with the options only the data can give (input size, tokeniser texts)."""
    opts = dict(cfg.encoder_options)
    train = ds.splits["train"]
    if cfg.encoder == "mlp":
        if ds.modality != "vector":
            raise ValueError(f"encoder: 'mlp' takes feature vectors; dataset '{ds.name}' is {ds.modality}")
        opts.setdefault("in_dim", int(train.inputs.shape[1]))
    elif cfg.encoder in ("cnn", "sparse", "fusion"):
        if ds.modality != "text":
            raise ValueError(f"encoder: '{cfg.encoder}' takes text; dataset '{ds.name}' is {ds.modality}")
        if "tokenizer_path" not in opts and "tokenizer_json" not in opts:
            opts.setdefault("train_texts", list(train.inputs))
    encoder = build_encoder(cfg.encoder, **opts)
    if encoder.modality != ds.modality:
        raise ValueError(f"encoder: '{cfg.encoder}' takes {encoder.modality} inputs; dataset '{ds.name}' "
                         f"is {ds.modality}")
    return encoder


def with_resolved_encoder_options(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the choices an encoder would make on this machine written in, so config.yaml
    says what ran: a ``frozen`` encoder's ``runtime: auto`` becomes the runtime it resolves to
    (with ``--resume`` elsewhere, a different choice is then a configuration change, not a silent one).

    Example:
        >>> from mlsupcon.config import TrainConfig
        >>> with_resolved_encoder_options(TrainConfig(encoder="mlp")).encoder_options
        {}
    """
    opts = cfg.encoder_options
    if cfg.encoder != "frozen" or opts.get("runtime", "auto") != "auto":
        return cfg
    from mlsupcon.models.onnx_backbone import resolve_runtime  # what FrozenEncoder resolves it to

    runtime = resolve_runtime("auto", opts.get("device"), bool(opts.get("save_backbone")))
    return dataclasses.replace(cfg, encoder_options={**opts, "runtime": runtime})


def prepare_encoder(encoder, ds: MultiLabelDataset, splits=("train", "validation", "test")) -> None:
    """Calls the encoder's optional ``prepare({split: inputs})`` hook once, before it is used
    (e.g. a frozen encoder that embeds every text once and caches the embeddings)."""
    hook = getattr(encoder, "prepare", None)
    if callable(hook):
        hook({s: ds.splits[s].inputs for s in splits if s in ds.splits})


def _loaders(cfg, ds, preprocess):
    return {
        "train": make_loader(ds.splits["train"], preprocess, cfg.batch_size, shuffle=True, seed=cfg.seed,
                             drop_last=True, num_workers=cfg.num_workers),
        **{s: make_loader(ds.splits[s], preprocess, cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers)
           for s in ("validation", "test")},
    }


def run_training(cfg: TrainConfig, dataset: MultiLabelDataset | None = None, *,
                 validated: bool = False) -> dict[str, Any]:
    """Trains and evaluates one configuration; returns the test metrics (also in metrics.json).

    With ``cfg.resume``, continues the interrupted run in ``cfg.output`` (same configuration):
    finished stages are loaded, the interrupted one continues from its last checkpoint.

    Args:
        cfg: The run's configuration; validated here (fields, then the method's checks:
            :func:`~mlsupcon.training.run_config.validate_run_config`), and its output folder
            checked, before the data is read.
        dataset: The dataset ``cfg`` names, already loaded (else loaded here).
        validated: The caller (the ``train`` command) validated ``cfg`` and checked its output
            folder before it read ``dataset``: neither is done again.
    """
    quiet_lightning()
    if not validated:
        validate_run_config(cfg)
    out = Path(cfg.output)
    if not validated and is_primary_process():  # before the data is read: a refused folder fails at once
        check_run_output(cfg, out)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()

    ds = dataset if dataset is not None else load_dataset(cfg.dataset, **cfg.dataset_options)
    data_notes = check_training_data(cfg, ds)  # empty splits, no labels …: before any work (done once)
    if cfg.auto:  # jsonl:/csv:/vectors: data without a config: settings chosen from the data, printed
        # The chosen config is a new one: the method's checks run on it (its fields are chosen valid).
        cfg, ds = apply_auto_settings(cfg, ds, methods=get_method, check=check_method_options)
    cfg = with_resolved_encoder_options(cfg)
    method = get_method(cfg.method)()
    if method.builds_own_encoder:  # e.g. linear: its featurizer is its encoder
        encoder, loaders = None, {}
    else:
        encoder = make_encoder(cfg, ds)
        loaders = _loaders(cfg, ds, encoder.preprocess)
    ctx = FitContext(cfg, ds, encoder, loaders, out, run=RunState())
    ctx.run.notes.extend(data_notes)  # already printed as warnings; metrics.json keeps them
    method.prepare(ctx)

    primary = is_primary_process()
    if primary:
        out.mkdir(parents=True, exist_ok=True)
    with run_lock(out) if primary else contextlib.nullcontext():
        # Other ranks follow rank 0 and write nothing; with --resume they load the same checkpoints
        # (the output folder must be shared by the nodes: docs/scaling.md).
        ctx.cfg = cfg = start_run_folder(cfg, out) if primary else dataclasses.replace(cfg, overwrite=False)
        prepare_encoder(encoder, ds)
        model = method.fit(ctx)
        if not primary:  # evaluation and artefacts are rank 0's
            return {}
        return _evaluate_and_export(ctx, method, model, t_start)


def _evaluate_and_export(ctx: FitContext, method, model: Classifier, t_start: float) -> dict[str, Any]:
    """Threshold (validation), metrics.json, the model/ export and the test embeddings."""
    cfg, ds, out, timings = ctx.cfg, ctx.dataset, ctx.out, ctx.timings
    model.to("cpu")
    with method.oom_guidance(cfg, "evaluation"):
        val_scores, val_y = predict_scores(model, ctx.eval_loader("validation", model.preprocess))
        test_scores, test_y, test_emb = predict_scores(model, ctx.eval_loader("test", model.preprocess),
                                                       want_embeddings=True)
    threshold, per_label, threshold_source, tuned = decision_rule(cfg, method, val_y, val_scores, ctx.extra)
    rule = threshold if per_label is None else per_label
    metrics = compute_metrics(test_y, test_scores, rule, ks=tuple(cfg.ks))
    val_metrics = compute_metrics(val_y, val_scores, rule, ks=tuple(cfg.ks))
    if tuned:
        # The variants of papers that tune a threshold per metric or per label (on validation),
        # next to the F1 at the run's own rule, so tables can compare decision rules.
        t_macro = tune_global_threshold_macro_f1(val_y, val_scores)
        metrics["threshold_macro_f1"] = float(t_macro)
        metrics["macro_f1_macro_threshold"] = float(macro_f1(test_y, test_scores, t_macro))
        shrunk = per_label if per_label is not None else tune_shrunk_thresholds(val_y, val_scores,
                                                                                global_threshold=threshold)
        metrics["micro_f1_global_threshold"] = float(micro_f1(test_y, test_scores, threshold))
        metrics["macro_f1_global_threshold"] = float(macro_f1(test_y, test_scores, threshold))
        metrics["micro_f1_per_label_thresholds"] = float(micro_f1(test_y, test_scores, shrunk))
        metrics["macro_f1_per_label_thresholds"] = float(macro_f1(test_y, test_scores, shrunk))
    parts = _blend_part_metrics(ctx, model) if tuned and "blend_linear" in ctx.extra else None
    timings["total_s"] = time.perf_counter() - t_start
    run = ctx.run
    result = {
        **metrics,
        "threshold": float(threshold),
        **({"thresholds": [float(t) for t in per_label]} if per_label is not None else {}),
        "threshold_source": threshold_source,
        "split": "test",
        "method": cfg.method,
        "loss": method.result_loss(cfg),
        "params": {"encoder": sum(p.numel() for p in model.encoder.parameters()),
                   "head": sum(p.numel() for p in model.head.parameters())},
        "seed": cfg.seed,
        "dataset": ds.name,
        "num_test": int(len(test_y)),
        "skipped_nonfinite_steps": int(sum(run.nonfinite.values())),
        "skipped_nonfinite_by_stage": {k: int(v) for k, v in run.nonfinite.items()},
        "timings": timings,
        "validation": val_metrics,
        **({"chosen_on_validation": ctx.extra} if ctx.extra else {}),
        **({"blend_parts": parts} if parts else {}),
        "notes": list(run.notes),  # what the run told the user (resumes, stages that hit their epoch cap)
    }
    # Each artefact appears whole (atomic writes; model/ as a folder); metrics.json, last, says the run finished.
    export_model(out, cfg, ds, model, threshold, per_label)
    if cfg.save_embeddings and test_emb is not None:
        keep = np.random.default_rng(0).permutation(len(test_emb))[:EMBEDDINGS_KEPT]
        atomic_savez(out / "embeddings_test.npz", embeddings=test_emb[keep], labels=test_y[keep].astype(np.uint8))
    write_json(out / "metrics.json", result)
    return result


def _blend_part_metrics(ctx: FitContext, model: Classifier) -> dict[str, dict[str, float]] | None:
    """Test micro-F1, macro-F1 and mAP of each part of the TF-IDF blend alone (``model``: the trained
    network, ``linear``: the TF-IDF linear model), each at its own global threshold tuned on validation
    micro-F1: what the trained network carries by itself, next to the blend. Reported only; nothing is
    chosen from it."""
    import torch

    from mlsupcon.models import BlendHead

    blend = model.head
    if not isinstance(blend, BlendHead):
        return None

    class BothParts(torch.nn.Module):  # one encoder pass per split scores both parts: [a | b] logits
        input = "pooled"

        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList([blend.head_a, blend.head_b])

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return torch.cat([part(h) for part in self.parts], dim=1)

    both = Classifier(model.encoder, BothParts())
    val_scores, val_y = predict_scores(both, ctx.eval_loader("validation", both.preprocess))
    test_scores, test_y = predict_scores(both, ctx.eval_loader("test", both.preprocess))
    c = val_y.shape[1]
    out = {}
    for i, name in enumerate(("model", "linear")):  # head_a: the trained network; head_b: the TF-IDF model
        val, test = val_scores[:, i * c:(i + 1) * c], test_scores[:, i * c:(i + 1) * c]
        t = tune_global_threshold(val_y, val) if val_y.sum() else 0.5
        out[name] = {"micro_f1": float(micro_f1(test_y, test, t)), "macro_f1": float(macro_f1(test_y, test, t)),
                     "map": float(mean_average_precision(test_y, test)), "threshold": float(t)}
    return out


def decision_rule(cfg: TrainConfig, method, val_y: np.ndarray, val_scores: np.ndarray,
                  chosen: dict[str, Any] | None = None):
    """The run's decision rule from the validation split only: ``(global threshold, per-label
    thresholds or None, where they come from, whether they were tuned)``.

    A loss with a rule of its own keeps it (zlpr: logit 0); ``threshold: tune`` is the global
    threshold best for validation micro-F1; ``tune-per-label`` adds one threshold per label,
    shrunk towards that global one (:func:`~mlsupcon.evaluation.tune_shrunk_thresholds`);
    ``auto`` takes the per-label rule where cross-validation on the validation split shows it keeps
    micro-F1 and raises macro-F1 (:func:`~mlsupcon.evaluation.choose_threshold_rule`; its table goes
    into ``chosen``, the run's ``chosen_on_validation``); a number is used as given."""
    decision = method.decision_threshold(cfg)
    if decision is not None:
        return float(decision[0]), None, decision[1], False
    if cfg.threshold not in THRESHOLD_RULES:
        return float(cfg.threshold), None, "fixed", False
    if val_y.sum() == 0:  # nothing to tune on: keep 0.5 and say so in metrics.json
        return 0.5, None, "fixed 0.5 (validation split has no positive labels)", False
    threshold = tune_global_threshold(val_y, val_scores)
    rule = cfg.threshold
    how = ""
    if rule == "auto":
        rule, table = (choose_threshold_rule(val_y, val_scores) if len(val_y) >= RULE_CV_FOLDS
                       else ("tune", {"folds": 0}))
        if chosen is not None:
            chosen["threshold_rule"] = {"rule": rule, "cross_validated": table}
        how = f" (chosen by {table['folds']}-fold cross-validation on validation)" if table["folds"] else ""
    if rule == "tune":
        return threshold, None, "validation micro-F1" + how, True
    per_label = tune_shrunk_thresholds(val_y, val_scores, global_threshold=threshold)
    return threshold, per_label, "validation F1 per label, shrunk towards the micro-F1 threshold" + how, True


def export_model(out: Path, cfg: TrainConfig, ds: MultiLabelDataset, model: Classifier, threshold: float,
                 per_label: np.ndarray | None = None) -> None:
    """``model/model.json`` (how to rebuild, labels, threshold and per-label thresholds when the
    run tuned them) + ``model/weights.safetensors``, written into a temporary folder renamed to
    ``model/`` once complete."""
    with atomic_dir(out / "model") as tmp:
        save_classifier(model, tmp, {
            "label_names": list(ds.label_names),
            "threshold": float(threshold),
            **({"thresholds": [float(t) for t in per_label]} if per_label is not None else {}),
            "dataset": cfg.dataset,
            "dataset_options": cfg.dataset_options,
            "method": cfg.method,
        })


def evaluate_run(path: str | Path, split: str = "test", dataset: str | None = None, ks=(1, 5, 8, 15),
                 batch_size: int = 512, dataset_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-evaluates an exported model on a split with its saved (validation-tuned) threshold:
    :func:`mlsupcon.inference.evaluate.evaluate_model` (``mlsupcon evaluate``)."""
    from mlsupcon.inference.evaluate import evaluate_model

    return evaluate_model(path, split=split, dataset=dataset, dataset_options=dataset_options, ks=ks,
                          batch_size=batch_size)
