"""Self-contained model folders: the files an encoder needs besides its weights and ``config()``.

An encoder's ``config()`` may point at folders outside the export: a ``transformer`` reads its
tokenizer and its Hugging Face architecture from ``model_path``, a ``resnet`` its architecture
from ``model_path``, a ``frozen`` encoder its whole (never trained) transformer. Such a model
would not load where that folder is missing. :func:`save_encoder_assets` writes what is needed
next to the weights, under ``encoder/``, and returns a JSON record of it; given that record,
:func:`resolve_encoder_assets` turns the saved ``config()`` into one that builds the encoder
from those files (always, when the record is there: the export is what the weights match).

============  ============================================  ===========================================
encoder       ``encoder/`` holds                            size
============  ============================================  ===========================================
transformer   tokenizer files + ``config.json`` (the        ~1 MB (weights stay in weights.safetensors)
              architecture; weights built from it, then
              loaded from ``weights.safetensors``)
resnet        ``config.json`` (only with ``model_path``)    a few kB
frozen        the whole transformer (safetensors weights +  ~87 MiB for all-MiniLM-L6-v2, ~420 MiB for a
              config + tokenizer), for a ``model_path``     BERT-base; with ``backbone="auto"`` the
              of its own or with ``backbone="always"``      bundled MiniLM is not copied (it ships with
                                                            ``mlsupcon[text]``)
fusion        one sub-folder per branch (``encoder/0`` …)   the branches'
mlp, cnn,     nothing: their tokenizer / featurizer state   —
sparse        travels in ``config()`` / the state dict
============  ============================================  ===========================================

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("transformer", config={"hidden_size": 8, "num_hidden_layers": 1,
    ...     "num_attention_heads": 2, "intermediate_size": 8}, segment_length=16, max_length=16)
    >>> folder = Path(tempfile.mkdtemp())
    >>> record = save_encoder_assets(enc, folder)
    >>> record, sorted(p.name for p in (folder / "encoder").iterdir())[:2]
    ({'kind': 'hf-config', 'path': 'encoder'}, ['config.json', 'special_tokens_map.json'])
    >>> cfg = resolve_encoder_assets(enc.config(), record, folder)
    >>> cfg["tokenizer_path"] == str(folder / "encoder"), cfg["config"]["hidden_size"]
    (True, 8)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from torch import nn

__all__ = ["ASSETS_DIR", "BACKBONE_CHOICES", "save_encoder_assets", "resolve_encoder_assets", "save_hf_tokenizer",
           "tokenizer_source", "TOKENIZER_FILES"]

#: Folder of the assets inside a model folder.
ASSETS_DIR = "encoder"
#: ``backbone`` choices of :func:`save_encoder_assets` (what a ``frozen`` encoder copies).
BACKBONE_CHOICES = ("auto", "always", "never")
#: Tokenizer files copied verbatim from a Hugging Face folder (those that exist).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "added_tokens.json", "sentencepiece.bpe.model", "spiece.model")


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Puts the finished folder ``tmp`` at ``dest`` (an older ``dest`` is removed first)."""
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def save_hf_tokenizer(tokenizer: Any, source: str | os.PathLike | None, out: str | os.PathLike) -> None:
    """Writes a tokenizer folder that ``transformers.AutoTokenizer`` and ``TextTokenizer.from_path`` read.

    Args:
        tokenizer: the encoder's :class:`~mlsupcon.models.tokenization.TextTokenizer`.
        source: the Hugging Face folder it was read from; its tokenizer files are copied
            verbatim when it still has them (same normaliser, roles, casing options).
        out: the folder to write into (created).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(source) if source is not None else None
    if src is not None and src.is_dir() and ((src / "tokenizer.json").is_file() or (src / "vocab.txt").is_file()):
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, out / name)
        return
    # No source folder any more: rebuild a fast tokenizer around the same tokenizers.Tokenizer.
    from transformers import PreTrainedTokenizerFast

    from .tokenization import SPECIAL_ROLES

    backend = tokenizer.tokenizer
    roles = {}
    for role in SPECIAL_ROLES:
        tid = tokenizer.token_id(role)
        if tid is not None:
            roles[f"{role}_token"] = backend.id_to_token(tid)
    PreTrainedTokenizerFast(tokenizer_object=backend, **roles).save_pretrained(str(out))


def tokenizer_source(cfg: Mapping[str, Any]) -> str | None:
    """The folder a transformer's ``config()`` reads its tokenizer from (None if gone)."""
    from .transformer import _resolve_model_path

    path = cfg.get("tokenizer_path") or (cfg.get("model_path") if cfg.get("config") is None else None)
    try:
        return _resolve_model_path(path)
    except FileNotFoundError:
        return None


def _write_transformer(encoder: nn.Module, dest: Path, backbone: str) -> dict[str, Any]:
    save_hf_tokenizer(encoder.tokenizer, tokenizer_source(encoder.config()), dest)
    encoder.backbone.config.save_pretrained(str(dest))
    return {"kind": "hf-config"}


def _write_resnet(encoder: nn.Module, dest: Path, backbone: str) -> dict[str, Any] | None:
    if encoder.config().get("model_path") is None:
        return None  # preset + config rebuild it
    encoder.backbone.config.save_pretrained(str(dest))
    return {"kind": "hf-config"}


def _write_frozen(encoder: nn.Module, dest: Path, backbone: str) -> dict[str, Any] | None:
    from .transformer import DEFAULT_MODEL_ALIASES

    own = encoder.config().get("model_path")
    bundled = own is None or str(own) in DEFAULT_MODEL_ALIASES
    if backbone == "never" or (backbone == "auto" and bundled):
        return None
    from .transformer import quiet_transformers

    transformer = encoder._load_backbone()  # the TransformerEncoder the embeddings come from
    save_hf_tokenizer(transformer.tokenizer, encoder.model_dir, dest)
    with quiet_transformers():
        encoder.source_model().save_pretrained(str(dest), safe_serialization=True)
    return {"kind": "hf-model"}


_WRITERS = {"transformer": _write_transformer, "resnet": _write_resnet, "frozen": _write_frozen}


def _write(encoder: nn.Module, folder: Path, rel: str, backbone: str) -> dict[str, Any] | None:
    name = getattr(encoder, "name", "")
    if name == "fusion":
        branches = [_write(b, folder, f"{rel}/{i}", backbone) for i, b in enumerate(encoder.branches)]
        return {"kind": "fusion", "branches": branches} if any(branches) else None
    writer = _WRITERS.get(name)
    if writer is None:
        return None
    dest = folder / rel
    dest.mkdir(parents=True, exist_ok=True)
    record = writer(encoder, dest, backbone)
    if record is None:
        dest.rmdir()
        return None
    return {**record, "path": rel}


def save_encoder_assets(encoder: nn.Module, folder: str | os.PathLike, backbone: str = "auto") -> dict[str, Any] | None:
    """Writes ``folder/encoder/`` (see the module table) and returns its record for ``model.json``.

    The folder is written under a temporary name and renamed into place, so an interrupted
    export leaves the previous ``encoder/`` (or none), never half of one.

    Args:
        encoder: the encoder of the exported model.
        folder: the model folder.
        backbone: what a ``frozen`` encoder copies: ``"auto"`` (its transformer unless it is
            the bundled MiniLM), ``"always"`` or ``"never"``.

    Returns:
        The JSON record :func:`resolve_encoder_assets` takes, or None when the encoder needs
        no files (then any older ``encoder/`` folder is removed).
    """
    if backbone not in BACKBONE_CHOICES:
        raise ValueError(f"backbone: expected one of {list(BACKBONE_CHOICES)}, got {backbone!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{ASSETS_DIR}."))
    try:
        record = _write(encoder, tmp, ASSETS_DIR, backbone)
        if record is None:
            if (folder / ASSETS_DIR).exists():
                shutil.rmtree(folder / ASSETS_DIR)
            return None
        _replace_dir(tmp / ASSETS_DIR, folder / ASSETS_DIR)
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hf_config(path: Path) -> dict[str, Any]:
    from transformers import AutoConfig

    from .transformer import quiet_transformers

    with quiet_transformers():
        return AutoConfig.from_pretrained(str(path), local_files_only=True).to_dict()


def resolve_encoder_assets(config: Mapping[str, Any], record: Mapping[str, Any] | None,
                           folder: str | os.PathLike) -> dict[str, Any]:
    """The encoder ``config()`` that builds the encoder from ``folder``'s assets instead of the
    original model folders; ``config`` unchanged (a copy) when ``record`` is None.

    Raises:
        ValueError: one line naming the asset folder, when it is missing.
    """
    cfg = dict(config)
    if not record:
        return cfg
    folder = Path(folder)
    kind = record.get("kind")
    if kind == "fusion":
        subs = list(cfg["encoders"])
        cfg["encoders"] = [resolve_encoder_assets(sub, rec, folder) for sub, rec in zip(subs, record["branches"])]
        return cfg
    path = folder / str(record["path"])
    if not path.is_dir():
        raise ValueError(f"model: {path} not found (the tokenizer / model files this export's model.json refers to); "
                         "copy the whole model folder")
    if kind == "hf-config" and cfg.get("name") == "transformer":
        cfg.update(model_path=None, config=_hf_config(path), tokenizer_path=str(path))
    elif kind == "hf-config" and cfg.get("name") == "resnet":
        cfg.update(model_path=None, config=_hf_config(path))
    elif kind == "hf-model":
        if not any(path.glob("*.safetensors")):  # from_pretrained would look for a pickle (pytorch_model.bin) next
            raise ValueError(f"model: {path} holds no *.safetensors weights (the transformer this export's model.json "
                             "refers to); copy the whole model folder")
        cfg.update(model_path=str(path))
    else:
        raise ValueError(f"model: unknown encoder asset kind {kind!r} for encoder {cfg.get('name')!r}")
    return cfg
