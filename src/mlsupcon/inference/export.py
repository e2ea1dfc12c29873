"""``mlsupcon export``: a run's model as a Hugging Face folder, or as a fully self-contained copy.

* ``export_hf(RUN, DIR)`` (``--format hf``, ``transformer`` encoders): the fine-tuned backbone in
  the ``save_pretrained`` layout plus its tokenizer, so ``transformers.AutoModel.from_pretrained
  (DIR)`` and ``AutoTokenizer.from_pretrained(DIR)`` load it. The pooled embedding the classifier
  reads is the mean of ``last_hidden_state`` over the attention mask (``pooling: mean``; the
  first token's state for ``cls``) of ``tokenizer(text)`` (documents longer than one segment are
  split into segments first: see :mod:`mlsupcon.models.transformer`). The classifier and
  projection heads go to ``mlsupcon_head.safetensors`` and the labels, threshold and pooling to
  ``mlsupcon.json``.
* ``export_portable(RUN, DIR)`` (``--format mlsupcon``): a copy of ``RUN/model/`` that carries
  every file its encoder needs, a ``frozen`` encoder's transformer included (``backbone=
  "always"``: ~87 MiB for the bundled MiniLM), for a machine with only mlsupcon installed.

Both write into a temporary folder next to ``DIR`` and rename it into place (a full disk: one
line, ``no space left on device (DIR)``, and no temporary folder left), with the permissions
of the process umask, and end with ``manifest.json`` (the sha256 of every file, and which
export wrote the folder). ``DIR`` must be new or empty; ``overwrite`` (``--force``) replaces an
earlier export only (recognised by its manifest, or, for exports written before manifests, by
its ``model.json`` / ``mlsupcon.json`` and file names): a folder that holds the run being
exported, lies inside a run, or holds anything else is refused, and nothing is deleted.

Example:
    >>> export_hf("runs/minilm", "exports/minilm-hf")                     # doctest: +SKIP
    >>> from transformers import AutoModel, AutoTokenizer                 # doctest: +SKIP
    >>> model = AutoModel.from_pretrained("exports/minilm-hf")            # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable
from pathlib import Path

from mlsupcon.inference.model import load
from mlsupcon.inference.storage import HF_EXPORT_FORMAT, READABLE_FORMATS, save_classifier
from mlsupcon.runs.folder import MODEL_DIR, is_run_folder, model_folder
from mlsupcon.runs.io import MANIFEST, atomic_dir, disk_errors, read_manifest, write_json, write_manifest

__all__ = ["export_hf", "export_portable", "check_export_output", "EXPORT_FORMATS"]

#: ``mlsupcon export --format`` choices.
EXPORT_FORMATS = ("hf", "mlsupcon")

# What exports written before manifests hold (their marker file first): --force may replace those.
_OLD_EXPORT_FILES = {
    "mlsupcon": ("model.json", ("model.json", "weights.safetensors", "encoder")),
    "hf": ("mlsupcon.json", ("mlsupcon.json", "mlsupcon_head.safetensors", "config.json", "generation_config.json",
                             "model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors",
                             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                             "vocab.json", "merges.txt", "added_tokens.json", "sentencepiece.bpe.model",
                             "spiece.model")),
}


def _names(paths: list[Path], limit: int = 4) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in sorted(paths)]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _export_kind(out: Path) -> tuple[str | None, list[Path]]:
    """Which export ``out`` holds (``"hf"``, ``"mlsupcon"`` or None) and the entries at its top
    that export did not write."""
    entries = list(out.iterdir())
    try:
        manifest = read_manifest(out)
    except ValueError:
        manifest = None
    if manifest is not None and manifest.get("export") in EXPORT_FORMATS:
        tops = {rel.split("/")[0] for rel in manifest["files"]} | {MANIFEST}
        return manifest["export"], [p for p in entries if p.name not in tops]
    for kind, (marker, names) in _OLD_EXPORT_FILES.items():
        try:
            fmt = json.loads((out / marker).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            continue
        if fmt in (READABLE_FORMATS if kind == "mlsupcon" else (HF_EXPORT_FORMAT,)):
            return kind, [p for p in entries if not any(fnmatch.fnmatchcase(p.name, n) for n in names)]
    return None, entries


def check_export_output(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuses, in one line naming ``out``, an export folder that would overwrite something else.

    ``out`` must be new or empty, or (``overwrite``) hold an earlier export and nothing else.
    Never: the run being exported (``out`` is it, holds it, or lies inside it), another run,
    or a folder inside a run.

    Returns:
        ``out`` (``~`` expanded).
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"output: {out} exists and is not a folder; choose another --output")
    source = model_folder(run).resolve()
    if source.name == MODEL_DIR and is_run_folder(source.parent):
        source = source.parent  # the whole run folder is off limits, not only its model/
    where = out.resolve()
    if where == source or where in source.parents:
        raise ValueError(f"output: {out} holds the run being exported ({source}); --force never deletes a run: "
                         "choose another --output")
    if source in where.parents:
        raise ValueError(f"output: {out} is inside the run being exported ({source}); a run folder holds one run "
                         "only: choose an --output outside it")
    for folder in (where, *where.parents):
        if is_run_folder(folder):
            raise ValueError(f"output: {out} {'is' if folder == where else 'is inside'} the training run {folder}; "
                             "--force never deletes a run: choose another --output")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    kind, others = _export_kind(out)
    if kind is None:
        raise ValueError(f"output: {out} is not empty ({_names(others)}) and holds no earlier mlsupcon export; "
                         "--force replaces only an export: choose a new or empty --output")
    if others:
        raise ValueError(f"output: {out} holds an earlier export and also {_names(others)}; --force deletes only "
                         "what an export wrote: move those away or choose another --output")
    if not overwrite:
        raise ValueError(f"output: {out} exists and is not empty (an earlier {kind} export): choose another folder, "
                         "or --force to replace it")
    return out


def _write_folder(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool, fmt: str,
                  fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` a temporary folder next to ``out``, then rename it to ``out`` (see the module docs)."""
    out = check_export_output(run, out, overwrite)
    with disk_errors(out), atomic_dir(out) as tmp:
        fill(tmp)
        if not (tmp / MANIFEST).is_file():
            write_manifest(tmp, {"export": fmt})
    return out


def export_hf(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Writes the run's fine-tuned transformer as a Hugging Face model folder (see the module docs).

    Raises:
        ValueError: the run's encoder is not a ``transformer``; ``out`` is not empty.
    """
    import torch
    from safetensors.torch import save_file

    from mlsupcon.models.portable import save_hf_tokenizer, tokenizer_source
    from mlsupcon.models.transformer import quiet_transformers

    check_export_output(run, out, overwrite)  # before loading anything
    model = load(run)
    enc = model.classifier.encoder
    name = getattr(enc, "name", type(enc).__name__)
    if name == "fusion":
        raise ValueError(_fusion_message(model))
    if name != "transformer":
        raise ValueError(f"format: 'hf' exports a transformer encoder; this run's encoder is {name!r} "
                         "(use --format mlsupcon for a self-contained copy of its model folder)")

    def fill(tmp: Path) -> None:
        with quiet_transformers():
            _full_backbone(enc, model.meta.get("encoder")).save_pretrained(str(tmp), safe_serialization=True)
        save_hf_tokenizer(enc.tokenizer, tokenizer_source(enc.config()), tmp)
        heads = {f"head.{k}": v for k, v in model.classifier.head.state_dict().items()}
        if model.classifier.projection is not None:
            heads.update({f"projection.{k}": v for k, v in model.classifier.projection.state_dict().items()})
        save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in heads.items()
                   if isinstance(v, torch.Tensor) and v.is_floating_point()}, str(tmp / "mlsupcon_head.safetensors"))
        cfg = model.classifier.config()
        write_json(tmp / "mlsupcon.json", {
            "format": HF_EXPORT_FORMAT,
            "label_names": model.labels,
            "threshold": model.threshold,
            **({"thresholds": model.meta["thresholds"]} if "thresholds" in model.meta else {}),
            "pooling": enc.pooling,
            "segment_length": enc.segment_length,
            "max_length": enc.max_length,
            "head": cfg["head"],
            "projection": cfg["projection"],
            "method": model.meta.get("method"),
            "dataset": model.meta.get("dataset"),
        })

    return _write_folder(run, out, overwrite, "hf", fill)


def _fusion_message(model) -> str:
    """Why a fusion run has no Hugging Face export, what setting to change, what inside it is a transformer."""
    enc = model.classifier.encoder
    branches = [getattr(b, "name", type(b).__name__) for b in enc.branches]
    listed = ", ".join(f"{i}: {b}" for i, b in enumerate(branches))
    blended = model.classifier.head_kind == "blend" and branches[-1] == "sparse"
    inner = [i for i, b in enumerate(branches) if b == "transformer"]
    what = (f"its transformer (branch {inner[0]}) is one part of it, and its scores alone are not the run's"
            if inner else "none of them is a transformer")
    if blended:
        return (f"format: 'hf' exports a plain transformer; this run's model is a 'fusion' of [{listed}]: the TF-IDF "
                f"linear model was blended in after training (blend_linear, on in the auto settings for text). {what}. "
                "For a Hugging Face export, train the run again with --no-blend-linear (config: blend_linear: false); "
                "for a self-contained copy of this model use --format mlsupcon")
    return (f"format: 'hf' exports a plain transformer; this run's encoder is a 'fusion' of [{listed}] ({what}); "
            "use --format mlsupcon for a self-contained copy of its model folder")


def _full_backbone(enc, saved_config):
    """The encoder's transformer as ``AutoModel`` builds it from its config, pooler included.

    mlsupcon builds BERT-like backbones without their pooler (``add_pooling_layer=False``: it
    is never used, pooling is ``mean`` / ``cls`` over ``last_hidden_state``), while
    ``AutoModel.from_pretrained`` builds one and warns that its weights are "newly
    initialized". The export therefore carries pooler weights: those of the checkpoint the run
    started from when it is still there, else a fixed (seed 0) initialisation. They do not
    change ``last_hidden_state``.
    """
    import torch
    from transformers import AutoModel

    backbone = enc.backbone
    own = backbone.state_dict()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = AutoModel.from_config(backbone.config)
    wanted = full.state_dict()
    missing = [k for k in wanted if k not in own]
    if not missing or any(k not in wanted for k in own):  # nothing to add, or not the same model class
        return backbone
    found = _checkpoint_tensors(saved_config, {k: tuple(wanted[k].shape) for k in missing})
    full.load_state_dict({**own, **found}, strict=False)
    return full.eval()


def _checkpoint_tensors(saved_config, shapes: dict[str, tuple]) -> dict:
    """Tensors ``shapes`` (name: shape) from the safetensors checkpoint the encoder started from, where
    it is still there and holds them with those shapes; ``{}`` otherwise."""
    from safetensors import SafetensorError, safe_open

    from mlsupcon.models.transformer import _resolve_model_path

    path = saved_config.get("model_path") if isinstance(saved_config, dict) else None
    try:
        folder = Path(_resolve_model_path(path)) if path is not None else None
    except (FileNotFoundError, ValueError):
        folder = None
    found: dict = {}
    for file in sorted(folder.glob("*.safetensors")) if folder is not None and folder.is_dir() else ():
        try:
            with safe_open(str(file), framework="pt") as fh:
                for key in set(shapes) & set(fh.keys()) - set(found):
                    tensor = fh.get_tensor(key)
                    if tuple(tensor.shape) == shapes[key]:
                        found[key] = tensor.float()
        except (SafetensorError, OSError):
            continue
    return found


def export_portable(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Writes a copy of the run's ``model/`` folder that carries every file its encoder needs
    (``backbone="always"``: a ``frozen`` encoder's transformer too); ``mlsupcon.load(out)`` loads it."""
    check_export_output(run, out, overwrite)  # before loading anything
    model = load(run)
    kept = {k: v for k, v in model.meta.items()
            if k not in ("format", "weights_sha256", "encoder_assets", "head", "projection", "manifest")}

    def fill(tmp: Path) -> None:
        save_classifier(model.classifier, tmp, kept, backbone="always", manifest={"export": "mlsupcon"})

    return _write_folder(run, out, overwrite, "mlsupcon", fill)
