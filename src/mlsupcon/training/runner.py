"""One run, from a config to ``metrics.json``: data → encoder → method → threshold → metrics.

Artefacts written to ``config.output``:

* ``config.yaml`` — the resolved configuration; ``environment.json`` — package and library versions;
* ``metrics.json`` — test metrics (and validation metrics under ``"validation"``), the threshold;
* ``model/weights.safetensors`` + ``model/model.json`` — everything ``mlsupcon evaluate`` needs,
  loadable without executing code;
* ``checkpoints/`` — Lightning checkpoints (resume), ``logs/<stage>/metrics.csv`` — curves;
* ``embeddings_test.npz`` — encoder embeddings of (up to 2,000) test examples, for plots.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsupcon.data import MultiLabelDataset, load_dataset
from mlsupcon.evaluation import compute_metrics, tune_global_threshold
from mlsupcon.losses import build as build_loss
from mlsupcon.models import LabelWiseAttention, LinearClassifier, ProjectionHead, build_encoder
from mlsupcon.training.batches import LossLabels, build_view_fn, make_loader, tensor_loader
from mlsupcon.training.config import TrainConfig, save_config
from mlsupcon.training.io import load_weights, save_weights, write_json
from mlsupcon.training.modules import (
    ClassifierModule,
    ContrastiveModule,
    FeatureInput,
    embed_all,
    predict,
)

log = logging.getLogger("mlsupcon")

EMBEDDINGS_KEPT = 2000


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*treespec.*")


def environment_info() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("mlsupcon", "torch", "lightning", "transformers", "tokenizers", "kornia", "scikit-learn", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def make_encoder(cfg: TrainConfig, ds: MultiLabelDataset):
    opts = dict(cfg.encoder_options)
    train = ds.splits["train"]
    if cfg.encoder == "mlp":
        if ds.modality != "vector":
            raise ValueError(f"encoder: 'mlp' takes feature vectors; dataset '{ds.name}' is {ds.modality}")
        opts.setdefault("in_dim", int(train.inputs.shape[1]))
    elif cfg.encoder == "cnn":
        if ds.modality != "text":
            raise ValueError(f"encoder: 'cnn' takes text; dataset '{ds.name}' is {ds.modality}")
        if "tokenizer_path" not in opts and "tokenizer_json" not in opts:
            opts.setdefault("train_texts", list(train.inputs))
    encoder = build_encoder(cfg.encoder, **opts)
    if encoder.modality != ds.modality:
        raise ValueError(f"encoder: '{cfg.encoder}' takes {encoder.modality} inputs; dataset '{ds.name}' is {ds.modality}")
    return encoder


def make_head(cfg: TrainConfig, encoder, ds: MultiLabelDataset):
    num_labels = ds.num_labels
    if cfg.head == "attention":
        if encoder.sequence_dim is None:
            raise ValueError(f"head: 'attention' needs a text encoder (cnn, transformer), not '{cfg.encoder}'")
        head = LabelWiseAttention(encoder.sequence_dim, num_labels)
        bias = head.bias
    else:
        head = LinearClassifier(encoder.output_dim, num_labels)
        bias = head.linear.bias
    # Start every label at its training prior, log(p / (1 - p)): with hundreds of rare labels,
    # a zero bias spends the first epochs only learning that most labels are absent.
    train = ds.splits["train"]
    p = np.asarray(train.labels.sum(0)).ravel() / max(1, len(train))
    p = np.clip(p, 1e-4, 1 - 1e-4)
    with torch.no_grad():
        bias.copy_(torch.from_numpy(np.log(p / (1 - p))).to(bias.dtype))
    return head


def _trainer(cfg: TrainConfig, out: Path, stage: str, max_epochs: int, checkpoints: bool, early_stop: bool):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    callbacks = []
    if checkpoints:
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints" / stage, save_last=True, save_top_k=0))
    if early_stop:
        callbacks.append(EarlyStopping(monitor="val/map", mode="max", patience=cfg.patience))
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            max_epochs=max_epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            precision=cfg.precision,
            logger=CSVLogger(str(out), name="logs", version=stage),
            callbacks=callbacks,
            enable_progress_bar=cfg.progress,
            enable_model_summary=False,
            enable_checkpointing=checkpoints,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
            deterministic=False,
        )
    except (MisconfigurationException, TypeError, ValueError, ImportError) as exc:
        # Bad accelerator / devices / strategy / precision values (or a backend that is not
        # installed): a user mistake, reported in one line rather than as a Lightning traceback.
        raise ValueError(
            f"trainer: accelerator={cfg.accelerator!r}, devices={cfg.devices!r}, strategy={cfg.strategy!r}, "
            f"precision={cfg.precision!r}: {' '.join(str(exc).split())}"
        ) from None


def _loaders(cfg, ds, preprocess):
    return {
        "train": make_loader(ds.splits["train"], preprocess, cfg.batch_size, shuffle=True, seed=cfg.seed,
                             drop_last=True, num_workers=cfg.num_workers),
        **{s: make_loader(ds.splits[s], preprocess, cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers)
           for s in ("validation", "test")},
    }


def run_training(cfg: TrainConfig, dataset: MultiLabelDataset | None = None) -> dict[str, Any]:
    """Trains and evaluates one configuration; returns the test metrics (also in metrics.json)."""
    import lightning as L

    _quiet_lightning()
    cfg.validate()
    out = Path(cfg.output)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t_start = time.perf_counter()

    ds = dataset if dataset is not None else load_dataset(cfg.dataset, **cfg.dataset_options)
    encoder = make_encoder(cfg, ds)
    loaders = _loaders(cfg, ds, encoder.preprocess)
    num_labels = ds.num_labels
    timings: dict[str, float] = {}

    contrastive_parts = None
    if cfg.method in ("two-stage", "end-to-end"):
        loss_labels = LossLabels(cfg.loss, ds)
        contrastive_parts = {
            "projection": ProjectionHead(encoder.output_dim, cfg.projection_hidden, cfg.projection_dim),
            "loss_fn": build_loss(cfg.loss, **cfg.loss_options),
            "loss_labels": loss_labels,
            "view_fn": build_view_fn(encoder, cfg.view_options),
            "views": cfg.views,
            "weight": cfg.contrastive_weight,
        }

    # Written once the data, encoder and loss are known to be valid, so that a user mistake
    # (unknown dataset, bad option…) never overwrites the config.yaml of a finished run there.
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    write_json(out / "environment.json", environment_info())

    if cfg.method == "kmcl":
        from mlsupcon.training.kmcl import run_kmcl

        head, head_kind, final_encoder = run_kmcl(cfg, ds, encoder, loaders, out, _trainer, timings)
    elif cfg.method == "two-stage":
        t0 = time.perf_counter()
        stage1 = ContrastiveModule(encoder, contrastive_parts["projection"], contrastive_parts["loss_fn"],
                                   contrastive_parts["loss_labels"], contrastive_parts["view_fn"], cfg.views,
                                   cfg.lr, cfg.weight_decay)
        _trainer(cfg, out, "contrastive", cfg.epochs, checkpoints=True, early_stop=False).fit(
            stage1, loaders["train"], loaders["validation"])
        timings["contrastive_s"] = time.perf_counter() - t0
        encoder.to("cpu")
        t0 = time.perf_counter()
        head = make_head(cfg, encoder, ds)
        if cfg.finetune_encoder:
            stage2 = ClassifierModule(encoder, head, cfg.head, cfg.classifier_lr, cfg.weight_decay)
            train_l, val_l = loaders["train"], loaders["validation"]
        elif cfg.head == "linear":
            for p in encoder.parameters():
                p.requires_grad_(False)
            # The encoder is frozen: embed every split once and train the linear probe on the
            # cached embeddings (the protocol of the SimDis paper).
            feats = {s: embed_all(encoder, _eval_loader(cfg, ds, s, encoder)) for s in ("train", "validation")}
            stage2 = ClassifierModule(FeatureInput(), head, "linear", cfg.classifier_lr, cfg.weight_decay)
            train_l = tensor_loader(*feats["train"], cfg.probe_batch_size, shuffle=True, seed=cfg.seed)
            val_l = tensor_loader(*feats["validation"], cfg.eval_batch_size, shuffle=False)
        else:
            stage2 = ClassifierModule(encoder, head, "attention", cfg.classifier_lr, cfg.weight_decay,
                                      freeze_encoder=True)
            train_l, val_l = loaders["train"], loaders["validation"]
        _trainer(cfg, out, "classifier", max(1, cfg.classifier_epochs), checkpoints=False, early_stop=True).fit(
            stage2, train_l, val_l)
        stage2.restore_best()
        timings["classifier_s"] = time.perf_counter() - t0
        head_kind, final_encoder = cfg.head, encoder
    else:  # end-to-end, bce, asl
        t0 = time.perf_counter()
        head = make_head(cfg, encoder, ds)
        module = ClassifierModule(
            encoder, head, cfg.head, cfg.lr, cfg.weight_decay,
            classifier_loss="asl" if cfg.method == "asl" else "bce",
            classifier_loss_options=cfg.classifier_loss_options,
            contrastive=contrastive_parts if cfg.method == "end-to-end" else None,
        )
        _trainer(cfg, out, "end_to_end", cfg.epochs, checkpoints=True, early_stop=True).fit(
            module, loaders["train"], loaders["validation"])
        module.restore_best()
        timings["train_s"] = time.perf_counter() - t0
        head_kind, final_encoder = cfg.head, encoder

    final_encoder.to("cpu")
    head.to("cpu")
    val_scores, val_y = predict(final_encoder, head, head_kind, _eval_loader(cfg, ds, "validation", final_encoder))
    test_scores, test_y, test_emb = predict(final_encoder, head, head_kind,
                                            _eval_loader(cfg, ds, "test", final_encoder), want_embeddings=True)
    threshold_source = "fixed"
    threshold = float(cfg.threshold) if cfg.threshold != "tune" else 0.5
    if cfg.threshold == "tune":
        if val_y.sum() > 0:
            threshold, threshold_source = tune_global_threshold(val_y, val_scores), "validation micro-F1"
        else:  # nothing to tune on: keep 0.5 and say so in metrics.json
            threshold_source = "fixed 0.5 (validation split has no positive labels)"
    metrics = compute_metrics(test_y, test_scores, threshold, ks=tuple(cfg.ks))
    val_metrics = compute_metrics(val_y, val_scores, threshold, ks=tuple(cfg.ks))
    timings["total_s"] = time.perf_counter() - t_start
    result = {
        **metrics,
        "threshold": float(threshold),
        "threshold_source": threshold_source,
        "split": "test",
        "method": cfg.method,
        "loss": cfg.loss if cfg.method in ("two-stage", "end-to-end") else cfg.method,
        "params": {"encoder": sum(p.numel() for p in final_encoder.parameters()),
                   "head": sum(p.numel() for p in head.parameters())},
        "seed": cfg.seed,
        "dataset": ds.name,
        "num_test": int(len(test_y)),
        "timings": timings,
        "validation": val_metrics,
    }
    write_json(out / "metrics.json", result)
    export_model(out, cfg, ds, final_encoder, head, head_kind, threshold)
    if cfg.save_embeddings and test_emb is not None:
        keep = np.random.default_rng(0).permutation(len(test_emb))[:EMBEDDINGS_KEPT]
        np.savez_compressed(out / "embeddings_test.npz", embeddings=test_emb[keep], labels=test_y[keep].astype(np.uint8))
    return result


def _eval_loader(cfg, ds, split, encoder):
    return make_loader(ds.splits[split], encoder.preprocess, cfg.eval_batch_size, shuffle=False,
                       num_workers=cfg.num_workers)


def export_model(out: Path, cfg: TrainConfig, ds: MultiLabelDataset, encoder, head, head_kind: str,
                 threshold: float) -> None:
    """``model/model.json`` (how to rebuild) + ``model/weights.safetensors`` (the weights)."""
    head_config = {"kind": head_kind, "class": type(head).__name__}
    if isinstance(head, LinearClassifier):
        head_config.update(in_dim=encoder.output_dim, num_labels=ds.num_labels)
    elif isinstance(head, LabelWiseAttention):
        head_config.update(hidden_dim=head.hidden_dim, num_labels=ds.num_labels)
    else:
        head_config.update(getattr(head, "config", lambda: {})())
    meta = {
        "format": "mlsupcon-model/1",
        "encoder": encoder.config(),
        "head": head_config,
        "label_names": list(ds.label_names),
        "threshold": float(threshold),
        "dataset": cfg.dataset,
        "dataset_options": cfg.dataset_options,
        "method": cfg.method,
    }
    (out / "model").mkdir(exist_ok=True)
    save_weights(out / "model" / "weights.safetensors", {"encoder": encoder, "head": head})
    write_json(out / "model" / "model.json", meta)


def load_model(model_dir: str | Path):
    """Rebuilds (encoder, head, head_kind, meta) from an exported ``model/`` folder; no pickle."""
    model_dir = Path(model_dir)
    meta_path = model_dir / "model.json"
    if not meta_path.is_file():
        raise ValueError(f"model: {meta_path} not found (expected a run folder's model/ export)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"model: {meta_path} is not valid JSON ({exc})") from None
    if meta.get("format") != "mlsupcon-model/1":
        raise ValueError(f"model: {meta_path} has format {meta.get('format')!r}, expected 'mlsupcon-model/1'")
    encoder = build_encoder(**meta["encoder"])
    h = meta["head"]
    if h["class"] == "LinearClassifier":
        head = LinearClassifier(h["in_dim"], h["num_labels"])
    elif h["class"] == "LabelWiseAttention":
        head = LabelWiseAttention(h["hidden_dim"], h["num_labels"])
    elif h["class"] == "KMCLClassifier":
        from mlsupcon.models.kmcl import KMCLHead
        from mlsupcon.training.kmcl import KMCLClassifier

        head = KMCLClassifier(KMCLHead(**{k: v for k, v in h.items() if k not in ("kind", "class")}))
    else:
        raise ValueError(f"model: unknown head class {h['class']!r} in {meta_path}")
    load_weights(model_dir / "weights.safetensors", {"encoder": encoder, "head": head})
    return encoder, head, h["kind"], meta


def evaluate_run(path: str | Path, split: str = "test", dataset: str | None = None, ks=(1, 5, 8, 15),
                 batch_size: int = 512) -> dict[str, Any]:
    """Re-evaluates an exported model on a split with its saved (validation-tuned) threshold."""
    path = Path(path)
    model_dir = path / "model" if (path / "model").is_dir() else path
    encoder, head, head_kind, meta = load_model(model_dir)
    ds = load_dataset(dataset or meta["dataset"], **(meta.get("dataset_options") or {}))
    if list(ds.label_names) != list(meta["label_names"]):
        raise ValueError(
            f"dataset: its label vocabulary ({ds.num_labels} labels) differs from the model's "
            f"({len(meta['label_names'])} labels); evaluate on data with the same labels"
        )
    if split not in ds.splits:
        raise ValueError(f"split: expected one of {sorted(ds.splits)}, got {split!r}")
    loader = make_loader(ds.splits[split], encoder.preprocess, batch_size, shuffle=False)
    scores, y = predict(encoder, head, head_kind, loader)
    result = compute_metrics(y, scores, meta["threshold"], ks=tuple(ks))
    result.update({"threshold": meta["threshold"], "split": split, "num_examples": int(len(y))})
    return result
