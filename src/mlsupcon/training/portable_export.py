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

Both write into a temporary folder next to ``DIR`` and rename it into place.

Example:
    >>> export_hf("runs/minilm", "exports/minilm-hf")                     # doctest: +SKIP
    >>> from transformers import AutoModel, AutoTokenizer                 # doctest: +SKIP
    >>> model = AutoModel.from_pretrained("exports/minilm-hf")            # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mlsupcon.training.export import save_classifier
from mlsupcon.training.inference import load
from mlsupcon.training.io import write_json

__all__ = ["export_hf", "export_portable", "EXPORT_FORMATS"]

#: ``mlsupcon export --format`` choices.
EXPORT_FORMATS = ("hf", "mlsupcon")


def _write_folder(out: str | os.PathLike, overwrite: bool, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` a temporary folder next to ``out``, then rename it to ``out``."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"output: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output: {out} exists and is not empty (choose another folder, or --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        fill(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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

    model = load(run)
    enc = model.classifier.encoder
    name = getattr(enc, "name", type(enc).__name__)
    if name != "transformer":
        raise ValueError(f"format: 'hf' exports a transformer encoder; this run's encoder is {name!r} "
                         "(use --format mlsupcon for a self-contained copy of its model folder)")

    def fill(tmp: Path) -> None:
        with quiet_transformers():
            enc.backbone.save_pretrained(str(tmp), safe_serialization=True)
        save_hf_tokenizer(enc.tokenizer, tokenizer_source(enc.config()), tmp)
        heads = {f"head.{k}": v for k, v in model.classifier.head.state_dict().items()}
        if model.classifier.projection is not None:
            heads.update({f"projection.{k}": v for k, v in model.classifier.projection.state_dict().items()})
        save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in heads.items()
                   if isinstance(v, torch.Tensor) and v.is_floating_point()}, str(tmp / "mlsupcon_head.safetensors"))
        cfg = model.classifier.config()
        write_json(tmp / "mlsupcon.json", {
            "format": "mlsupcon-hf/1",
            "label_names": model.labels,
            "threshold": model.threshold,
            "pooling": enc.pooling,
            "segment_length": enc.segment_length,
            "max_length": enc.max_length,
            "head": cfg["head"],
            "projection": cfg["projection"],
            "method": model.meta.get("method"),
            "dataset": model.meta.get("dataset"),
        })

    return _write_folder(out, overwrite, fill)


def export_portable(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Writes a copy of the run's ``model/`` folder that carries every file its encoder needs
    (``backbone="always"``: a ``frozen`` encoder's transformer too); ``mlsupcon.load(out)`` loads it."""
    model = load(run)
    kept = {k: v for k, v in model.meta.items()
            if k not in ("format", "weights_sha256", "encoder_assets", "head", "projection")}

    def fill(tmp: Path) -> None:
        save_classifier(model.classifier, tmp, kept, backbone="always")

    return _write_folder(out, overwrite, fill)
