"""One run, from a config to ``metrics.json``: data → encoder → method → threshold → metrics.

Artefacts written to ``config.output``:

* ``config.yaml`` — the resolved configuration; ``environment.json`` — package and library versions;
* ``metrics.json`` — test metrics (and validation metrics under ``"validation"``), the threshold;
* ``model/weights.safetensors`` + ``model/model.json`` — everything ``mlsupcon evaluate`` needs,
  loadable without executing code;
* ``checkpoints/<stage>/last.ckpt`` — Lightning checkpoints, written atomically every
  ``checkpoint_every_n_steps`` steps and after every epoch, with the RNG states and the position
  in the epoch; ``checkpoints/<stage>/done.json`` once a stage has finished (``--resume``);
* ``logs/<stage>/metrics.csv`` — curves;
* ``embeddings_test.npz`` — encoder embeddings of (up to 2,000) test examples, for plots.

What happens on failures (bad data, NaN losses, out of memory, a killed job, corrupt files) and
what ``--resume`` restores: docs/failures.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlsupcon.data import MultiLabelDataset, load_dataset
from mlsupcon.evaluation import compute_metrics, tune_global_threshold
from mlsupcon.losses import build as build_loss
from mlsupcon.models import Classifier, ProjectionHead, build_encoder, build_head
from mlsupcon.training.batches import LossLabels, build_view_fn, make_loader, tensor_loader
from mlsupcon.training.config import TrainConfig, save_config
from mlsupcon.training.scale import lightning_strategy, make_momentum, wrap_criterion
from mlsupcon.training.export import load_classifier, save_classifier
from mlsupcon.training.io import write_json
from mlsupcon.training.reliability import (
    AtomicCheckpointIO,
    CheckpointError,
    EpochSampler,
    ResumableCheckpoint,
    TrainingInterrupted,
    load_checkpoint_file,
    merge_resumed_log,
    oom_guidance,
    read_log_rows,
    restore_rng,
    write_log_rows,
)
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
    # Mid-epoch resume is exact here (EpochSampler + ResumableCheckpoint), whatever Lightning
    # infers from the loader; and a resumed stage keeps its earlier log rows (merge_resumed_log).
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    # A skipped (non-finite) step returns None on purpose; it is counted and logged instead.
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")


PACKAGES = ("mlsupcon", "torch", "lightning", "numpy", "scipy", "scikit-learn", "safetensors", "pyyaml",
            "transformers", "tokenizers", "kornia", "pillow", "pandas")


def environment_info() -> dict[str, Any]:
    """Versions and settings that a run's numbers can depend on (``environment.json``)."""
    import importlib.metadata as md

    import mlsupcon

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cuda = torch.cuda.is_available()
    return {
        "mlsupcon_version": mlsupcon.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "torch": {"version": torch.__version__, "cuda_available": cuda, "cuda_version": torch.version.cuda,
                  "device_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
                  "num_threads": torch.get_num_threads(),
                  "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()},
        "command": list(sys.argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


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
    head = build_head(cfg.head, encoder, ds.num_labels)
    # Start every label at its training prior, log(p / (1 - p)): with hundreds of rare labels,
    # a zero bias spends the first epochs only learning that most labels are absent.
    train = ds.splits["train"]
    p = np.asarray(train.labels.sum(0)).ravel() / max(1, len(train))
    p = np.clip(p, 1e-4, 1 - 1e-4)
    head.init_prior(torch.from_numpy(np.log(p / (1 - p))))
    return head


def _trainer(cfg: TrainConfig, out: Path, stage: str, max_epochs: int, early_stop: bool, checkpoint):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger

    callbacks = [checkpoint]
    if early_stop:
        callbacks.append(EarlyStopping(monitor="val/map", mode="max", patience=cfg.patience))
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            max_epochs=max_epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=lightning_strategy(cfg),
            num_nodes=cfg.num_nodes,
            precision=cfg.precision,
            logger=CSVLogger(str(out), name="logs", version=stage),
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=cfg.progress,
            enable_model_summary=False,
            enable_checkpointing=True,
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


STAGES = ("contrastive", "classifier", "end_to_end")
#: Options that may change between an interrupted run and its ``--resume``: they do not change
#: the training, except that a different ``eval_batch_size`` (to get past an out-of-memory error
#: in evaluation) can change the last bits of predictions and, in a contrastive stage, the
#: random views drawn for the validation loss and so the randomness of the following steps.
RESUME_FREE_KEYS = frozenset({"resume", "progress", "output", "num_workers", "eval_batch_size"})


class _RunState:
    """Per-run bookkeeping of the stages: non-finite step counts, resume notes."""

    def __init__(self) -> None:
        self.nonfinite: dict[str, int] = {}
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
        print(f"mlsupcon: {message}", file=sys.stderr, flush=True)


def _check_stage_checkpoint(ckpt: dict[str, Any], path: Path, module) -> dict[str, Any]:
    """The checkpoint is one of ours and fits the module; returns its resume state."""
    state = (ckpt.get("callbacks") or {}).get(ResumableCheckpoint.STATE_KEY)
    weights = ckpt.get("state_dict")
    if not isinstance(state, dict) or not isinstance(weights, dict) or "rng" not in state:
        raise CheckpointError(
            f"checkpoint: {path} was not written by this version of mlsupcon (no resume state); "
            "delete it and rerun with --resume to restart that stage, or rerun without --resume"
        )
    own = module.state_dict()
    bad = sorted(set(own) ^ set(weights))[:5] or [
        k for k in own if tuple(own[k].shape) != tuple(getattr(weights[k], "shape", ()))][:5]
    if bad:
        raise CheckpointError(
            f"checkpoint: {path} does not match the model of this configuration (e.g. {bad}); "
            "resume with the configuration of the interrupted run, or rerun without --resume"
        )
    return state


def _fit_stage(cfg: TrainConfig, out: Path, stage: str, module, train_loader, val_loader, max_epochs: int,
               early_stop: bool, run: _RunState) -> None:
    """Fits one stage: checkpoints, resume (or skipping a finished stage), non-finite and OOM policies."""
    module.stage, module.max_nonfinite_steps = stage, cfg.max_nonfinite_steps
    ckpt_dir = out / "checkpoints" / stage
    last, done = ckpt_dir / "last.ckpt", ckpt_dir / "done.json"
    sampler = train_loader.sampler if isinstance(train_loader.sampler, EpochSampler) else None
    checkpoint = ResumableCheckpoint(ckpt_dir, cfg.checkpoint_every_n_steps, sampler, train_loader.batch_size)
    if cfg.resume and last.is_file():
        ckpt = load_checkpoint_file(last)
        state = _check_stage_checkpoint(ckpt, last, module)
        if done.is_file():
            # Finished before: the weights, best epoch and RNG states as they were at its end.
            module.load_state_dict(ckpt["state_dict"])
            module.on_load_checkpoint(ckpt)
            restore_rng(state["rng"])
            run.nonfinite[stage] = module.nonfinite_steps
            run.note(f"stage '{stage}' had finished; loaded it from {last}")
            return
        del ckpt
        run.note(f"resuming stage '{stage}' from {last} (epoch {state['epoch']}, batch {state['batches_done']} "
                 f"of it, step {state['global_step']})")
        ckpt_path = str(last)
        log_dir = out / "logs" / stage
        kept_rows = read_log_rows(log_dir, int(state["epoch"]))
        # Lightning's CSV logger deletes metrics.csv when it starts: keep the complete epochs aside.
        (log_dir / "metrics.before_resume.csv").unlink(missing_ok=True)
        write_log_rows(log_dir / "metrics.before_resume.csv", kept_rows)
    else:
        ckpt_path, kept_rows, log_dir = None, None, None
    trainer = _trainer(cfg, out, stage, max_epochs, early_stop, checkpoint)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        with oom_guidance(cfg, stage):
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning stops at a batch boundary on SIGTERM and exits "successfully"; say what happened.
        where = f"{last}" if last.is_file() else "no checkpoint yet"
        raise TrainingInterrupted(
            f"stopped by SIGTERM in stage '{stage}' (step {trainer.global_step}; last checkpoint: {where}); "
            f"continue with `mlsupcon train --output {out} --resume`"
        ) from None
    checkpoint.restore_pending(trainer)  # a stage that had ended just before the kill
    if kept_rows is not None:
        merge_resumed_log(log_dir, kept_rows)
        (log_dir / "metrics.before_resume.csv").unlink(missing_ok=True)
    if is_primary_process():
        write_json(done, {"stage": stage, "finished": True, "nonfinite_steps": int(module.nonfinite_steps)})
    run.nonfinite[stage] = module.nonfinite_steps


def is_primary_process() -> bool:
    """False in the extra processes of a distributed launch (Lightning's DDP launcher or
    torchrun set RANK / LOCAL_RANK / NODE_RANK): only rank 0 locks and writes the run folder."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@contextlib.contextmanager
def _run_lock(out: Path):
    """One process at a time per output folder (a second one would interleave checkpoints and
    logs). ``flock`` is released by the kernel when the holder dies, even by SIGKILL."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no guard
        yield
        return
    fh = open(out / ".mlsupcon.lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                yield  # a file system without locks (some network mounts): no guard
                return
            fh.seek(0)
            holder = fh.read().strip() or "pid unknown"
            raise ValueError(
                f"output: another mlsupcon process ({holder}) is writing to {out}; wait for it to end "
                "(then use --resume if it was interrupted) or choose another --output"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock


def _clear_stage_state(out: Path) -> None:
    """A new (not resumed) run in an existing folder: forget the checkpoints of the old one."""
    for stage in STAGES:
        d = out / "checkpoints" / stage
        if d.is_dir():
            for p in [d / "last.ckpt", d / "done.json", *d.glob(".last.ckpt.*.tmp")]:
                p.unlink(missing_ok=True)
        (out / "logs" / stage / "metrics.before_resume.csv").unlink(missing_ok=True)


def _check_resume_config(cfg: TrainConfig, out: Path) -> None:
    """``--resume`` continues the same configuration: any other difference is refused."""
    import yaml

    path = out / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"resume: cannot read {path} ({' '.join(str(exc).split())[:160]}); "
                         "rerun without --resume") from None
    if not isinstance(saved, dict):
        raise ValueError(f"resume: {path} is not a mapping of option: value; rerun without --resume")
    defaults = TrainConfig().to_dict()
    current = json.loads(json.dumps(cfg.to_dict()))
    diffs = []
    for key, value in current.items():
        if key in RESUME_FREE_KEYS:
            continue
        before = json.loads(json.dumps(saved.get(key, defaults[key])))
        if before != value:
            diffs.append(f"{key}: {before!r} -> {value!r}")
    if diffs:
        raise ValueError(
            f"resume: the configuration differs from the interrupted run's {path} ({'; '.join(diffs[:6])}); "
            "resume with the same options (`mlsupcon train --output DIR --resume` reads DIR/config.yaml), "
            "or start a new run without --resume"
        )


def run_training(cfg: TrainConfig, dataset: MultiLabelDataset | None = None) -> dict[str, Any]:
    """Trains and evaluates one configuration; returns the test metrics (also in metrics.json).

    With ``cfg.resume``, continues the interrupted run in ``cfg.output`` (same configuration):
    finished stages are loaded, the interrupted one continues from its last checkpoint.
    """
    import lightning as L

    _quiet_lightning()
    cfg.validate()
    out = Path(cfg.output)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    t_start = time.perf_counter()

    ds = dataset if dataset is not None else load_dataset(cfg.dataset, **cfg.dataset_options)
    encoder = make_encoder(cfg, ds)
    loaders = _loaders(cfg, ds, encoder.preprocess)
    timings: dict[str, float] = {}

    contrastive_parts = None
    if cfg.method in ("two-stage", "end-to-end"):
        loss_labels = LossLabels(cfg.loss, ds)
        contrastive_parts = {
            "projection": ProjectionHead(encoder.output_dim, cfg.projection_hidden, cfg.projection_dim),
            "loss_fn": wrap_criterion(cfg, build_loss(cfg.loss, **cfg.loss_options), cfg.loss, ds.num_labels),
            "loss_labels": loss_labels,
            "view_fn": build_view_fn(encoder, cfg.view_options),
            "views": cfg.views,
            "weight": cfg.contrastive_weight,
        }

    out.mkdir(parents=True, exist_ok=True)
    primary = is_primary_process()
    with _run_lock(out) if primary else contextlib.nullcontext():
        run = _RunState()
        # Written once the data, encoder and loss are known to be valid, so that a user mistake
        # (unknown dataset, bad option…) never overwrites the config.yaml of a finished run there.
        if not primary:
            cfg = dataclasses.replace(cfg, resume=False)  # other ranks follow rank 0; they write nothing
        elif cfg.resume and (out / "config.yaml").is_file():
            _check_resume_config(cfg, out)
            env_path = out / "environment.json"
            try:
                env = json.loads(env_path.read_text())
            except (OSError, ValueError):
                env = {}
            env.setdefault("resumes", []).append(environment_info())
            write_json(env_path, env)
        else:
            if cfg.resume:
                run.note(f"nothing to resume in {out} (no config.yaml): starting a new run")
            out.mkdir(parents=True, exist_ok=True)
            _clear_stage_state(out)
            save_config(dataclasses.replace(cfg, resume=False), out / "config.yaml")
            write_json(out / "environment.json", environment_info())
            cfg = dataclasses.replace(cfg, resume=False)

        if cfg.method == "kmcl":
            from mlsupcon.training.kmcl import run_kmcl

            fit = lambda *a, **k: _fit_stage(cfg, out, *a, run=run, **k)  # noqa: E731
            with oom_guidance(cfg, "end_to_end"):
                model = run_kmcl(cfg, ds, encoder, loaders, fit, timings)
        elif cfg.method == "two-stage":
            t0 = time.perf_counter()
            stage1 = ContrastiveModule(encoder, contrastive_parts["projection"], contrastive_parts["loss_fn"],
                                       contrastive_parts["loss_labels"], contrastive_parts["view_fn"], cfg.views,
                                       cfg.lr, cfg.weight_decay,
                                       momentum_encoder=make_momentum(cfg, encoder, contrastive_parts["projection"]))
            _fit_stage(cfg, out, "contrastive", stage1, loaders["train"], loaders["validation"], cfg.epochs,
                       early_stop=False, run=run)
            timings["contrastive_s"] = time.perf_counter() - t0
            encoder.to("cpu")
            t0 = time.perf_counter()
            head = make_head(cfg, encoder, ds)
            with oom_guidance(cfg, "classifier"):
                if cfg.finetune_encoder:
                    stage2 = ClassifierModule(encoder, head, cfg.classifier_lr, cfg.weight_decay)
                    train_l, val_l = loaders["train"], loaders["validation"]
                elif head.input == "pooled":
                    for p in encoder.parameters():
                        p.requires_grad_(False)
                    # The encoder is frozen: embed every split once and train the linear probe on the
                    # cached embeddings (the protocol of the SimDis paper).
                    feats = {s: embed_all(encoder, _eval_loader(cfg, ds, s, encoder)) for s in ("train", "validation")}
                    stage2 = ClassifierModule(FeatureInput(), head, cfg.classifier_lr, cfg.weight_decay)
                    train_l = tensor_loader(*feats["train"], cfg.probe_batch_size, shuffle=True, seed=cfg.seed)
                    val_l = tensor_loader(*feats["validation"], cfg.eval_batch_size, shuffle=False)
                else:
                    stage2 = ClassifierModule(encoder, head, cfg.classifier_lr, cfg.weight_decay,
                                              freeze_encoder=True)
                    train_l, val_l = loaders["train"], loaders["validation"]
            _fit_stage(cfg, out, "classifier", stage2, train_l, val_l, max(1, cfg.classifier_epochs),
                       early_stop=True, run=run)
            stage2.restore_best()
            timings["classifier_s"] = time.perf_counter() - t0
            model = Classifier(encoder, head, contrastive_parts["projection"])
        else:  # end-to-end, bce, asl
            t0 = time.perf_counter()
            head = make_head(cfg, encoder, ds)
            module = ClassifierModule(
                encoder, head, cfg.lr, cfg.weight_decay,
                classifier_loss="asl" if cfg.method == "asl" else "bce",
                classifier_loss_options=cfg.classifier_loss_options,
                contrastive=contrastive_parts if cfg.method == "end-to-end" else None,
            )
            _fit_stage(cfg, out, "end_to_end", module, loaders["train"], loaders["validation"], cfg.epochs,
                       early_stop=True, run=run)
            module.restore_best()
            timings["train_s"] = time.perf_counter() - t0
            model = Classifier(encoder, head, contrastive_parts["projection"] if cfg.method == "end-to-end" else None)

        if not primary:  # evaluation and artefacts are rank 0's
            return {}
        model.to("cpu")
        with oom_guidance(cfg, "evaluation"):
            val_scores, val_y = predict(model, _eval_loader(cfg, ds, "validation", model.encoder))
            test_scores, test_y, test_emb = predict(model, _eval_loader(cfg, ds, "test", model.encoder),
                                                    want_embeddings=True)
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
            "params": {"encoder": sum(p.numel() for p in model.encoder.parameters()),
                       "head": sum(p.numel() for p in model.head.parameters())},
            "seed": cfg.seed,
            "dataset": ds.name,
            "num_test": int(len(test_y)),
            "skipped_nonfinite_steps": int(sum(run.nonfinite.values())),
            "skipped_nonfinite_by_stage": {k: int(v) for k, v in run.nonfinite.items()},
            "timings": timings,
            "validation": val_metrics,
        }
        write_json(out / "metrics.json", result)
        export_model(out, cfg, ds, model, threshold)
        if cfg.save_embeddings and test_emb is not None:
            keep = np.random.default_rng(0).permutation(len(test_emb))[:EMBEDDINGS_KEPT]
            _atomic_savez(out / "embeddings_test.npz", embeddings=test_emb[keep], labels=test_y[keep].astype(np.uint8))
        return result


def _atomic_savez(path: Path, **arrays) -> None:
    import io as _io

    from mlsupcon.training.io import atomic_write_bytes

    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _eval_loader(cfg, ds, split, encoder):
    return make_loader(ds.splits[split], encoder.preprocess, cfg.eval_batch_size, shuffle=False,
                       num_workers=cfg.num_workers)


def export_model(out: Path, cfg: TrainConfig, ds: MultiLabelDataset, model: Classifier, threshold: float) -> None:
    """``model/model.json`` (how to rebuild, labels, threshold) + ``model/weights.safetensors``."""
    save_classifier(model, out / "model", {
        "label_names": list(ds.label_names),
        "threshold": float(threshold),
        "dataset": cfg.dataset,
        "dataset_options": cfg.dataset_options,
        "method": cfg.method,
    })


def load_model(model_dir: str | Path):
    """Compatibility wrapper of :func:`load_classifier`: ``(encoder, head, head_kind, meta)``."""
    model, meta = _load_run_model(model_dir)
    return model.encoder, model.head, model.head_kind, meta


def _load_run_model(model_dir: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """A run's exported model; its model.json must also hold the labels and the threshold."""
    model, meta = load_classifier(model_dir)
    missing = [k for k in ("label_names", "threshold", "dataset") if k not in meta]
    if missing:
        raise ValueError(f"model: {Path(model_dir) / 'model.json'} does not describe a model (missing key "
                         f"{missing[0]!r}); the file was edited or damaged: re-export it by rerunning the training run")
    return model, meta


def evaluate_run(path: str | Path, split: str = "test", dataset: str | None = None, ks=(1, 5, 8, 15),
                 batch_size: int = 512) -> dict[str, Any]:
    """Re-evaluates an exported model on a split with its saved (validation-tuned) threshold."""
    path = Path(path)
    model_dir = path / "model" if (path / "model").is_dir() else path
    model, meta = _load_run_model(model_dir)
    spec = dataset or meta["dataset"]
    ds = load_dataset(spec, **(meta.get("dataset_options") or {}))
    if list(ds.label_names) != list(meta["label_names"]):
        ours, theirs = list(meta["label_names"]), list(ds.label_names)
        missing = [l for l in ours if l not in set(theirs)][:3]
        extra = [l for l in theirs if l not in set(ours)][:3]
        detail = (f"not in the data: {missing}; " if missing else "") + (f"not in the model: {extra}" if extra else "")
        if not detail:
            detail = "same labels in another order"
        raise ValueError(
            f"dataset: the label vocabulary of {spec!r} ({ds.num_labels} labels) differs from the model's "
            f"({len(ours)} labels; {detail.rstrip('; ')}); evaluate on data with the same labels"
        )
    if split not in ds.splits:
        raise ValueError(f"split: expected one of {sorted(ds.splits)}, got {split!r}")
    loader = make_loader(ds.splits[split], model.preprocess, batch_size, shuffle=False)
    scores, y = predict(model, loader)
    result = compute_metrics(y, scores, meta["threshold"], ks=tuple(ks))
    result.update({"threshold": meta["threshold"], "split": split, "num_examples": int(len(y))})
    return result
