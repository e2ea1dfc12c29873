"""COCO-format multi-label image sets (``coco:ANNOTATION_JSON[:IMAGE_DIR]``).

Labels of an image = the categories of its annotations (any annotation, crowd
ones included); label names = the file's category names ordered by category id
(80 for real COCO); hierarchy = supercategories when every category has one.

Splits:

* one file: seeded 80/10/10 split (``split_fractions``, ``seed``);
* ``train=``, ``validation=`` (alias ``val=``), ``test=`` options, each
  ``"ANNOTATION_JSON[:IMAGE_DIR]"``, give those splits from their own files; the
  splits not given are a seeded split of the main file, e.g.
  ``load_dataset("coco:instances_val2017.json", train="instances_train2017.json")``
  trains on train2017 and halves val2017 into validation and test (COCO's own test
  set has no public annotations).

Images are read lazily (:class:`~mlsupcon.data.images.ImageFiles`): PIL, RGB,
resized to ``image_size`` × ``image_size`` (default 224). Every image is decoded once when the
data is loaded (JPEGs at 1/8 scale, a few threads): an unreadable one is an error naming the
file, before any training, or, with ``on_bad_image="skip"``, dropped and counted
(``info["bad_images"]``, a :class:`~mlsupcon.data.base.DataWarning`); ``"unchecked"`` skips
that pass (a few milliseconds of CPU per image). Without an image
directory the loader tries, in order, the annotation file's folder, then
``../val2017``-style folders named after the file (``instances_val2017.json`` →
``val2017``) beside and above it.

Example:
    >>> ds = load_dataset("coco:annotations/instances_val2017.json", image_size=224)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataWarning, MultiLabelDataset, Split, encode_labels, seeded_split
from .hierarchy import LabelHierarchy
from .images import ImageFiles, image_problems

__all__ = ["load_coco", "parse_coco_spec"]


def parse_coco_spec(spec: str) -> tuple[Path, Path | None]:
    """Split ``"ANN_JSON[:IMAGE_DIR]"`` into paths; the first ``:`` after an existing file wins.

    Raises:
        FileNotFoundError: No prefix of ``spec`` is an existing file.
    """
    p = Path(spec).expanduser()
    if p.is_file():
        return p, None
    for i, ch in enumerate(spec):
        if ch == ":" and Path(spec[:i]).expanduser().is_file():
            rest = spec[i + 1 :]
            return Path(spec[:i]).expanduser(), (Path(rest).expanduser() if rest else None)
    raise FileNotFoundError(f"COCO annotation file not found: {spec}")


class _CocoFile:
    def __init__(self, ann: Path, image_dir: Path | None) -> None:
        self.ann = ann
        src = str(ann)
        try:
            with open(ann, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed JSON in {src}: {e.msg} (line {e.lineno}, column {e.colno})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{src}: expected a JSON object with images/annotations/categories")
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ValueError(f"missing key '{key}' in {src} (keys: {sorted(data)})")
        self.categories: dict[int, tuple[str, str | None]] = {}
        for i, c in enumerate(data["categories"]):
            if not isinstance(c, dict) or "id" not in c or "name" not in c:
                raise ValueError(f"categories[{i}] of {src}: needs 'id' and 'name'")
            self.categories[int(c["id"])] = (str(c["name"]), c.get("supercategory"))
        self.image_ids: list[int] = []
        self.file_names: list[str] = []
        pos: dict[int, int] = {}
        for i, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise ValueError(f"images[{i}] of {src}: needs 'id' and 'file_name'")
            if int(im["id"]) in pos:
                raise ValueError(f"duplicate image id {im['id']} in {src}: images[{pos[int(im['id'])]}] and "
                                 f"images[{i}]; image ids must be unique")
            pos[int(im["id"])] = len(self.image_ids)
            self.image_ids.append(int(im["id"]))
            self.file_names.append(str(im["file_name"]))
        self.labels: list[set[int]] = [set() for _ in self.image_ids]
        for i, a in enumerate(data["annotations"]):
            if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
                raise ValueError(f"annotations[{i}] of {src}: needs 'image_id' and 'category_id'")
            im_i = pos.get(int(a["image_id"]))
            if im_i is None:
                raise ValueError(f"annotations[{i}] of {src}: unknown image_id {a['image_id']}")
            cid = int(a["category_id"])
            if cid not in self.categories:
                raise ValueError(f"annotations[{i}] of {src}: unknown category_id {cid}")
            self.labels[im_i].add(cid)
        self.image_dir = self._resolve_dir(image_dir)

    def _resolve_dir(self, given: Path | None) -> Path:
        if not self.file_names:
            return given or self.ann.parent
        first = self.file_names[0]
        if given is not None:
            cands = [given]
        else:
            stem = self.ann.stem
            suffix = stem.split("_", 1)[1] if "_" in stem else stem
            cands = [self.ann.parent, self.ann.parent.parent / suffix, self.ann.parent / suffix]
        for c in cands:
            if (c / first).is_file():
                chosen = c
                break
        else:
            tried = ", ".join(str(c) for c in cands)
            raise FileNotFoundError(
                f"image '{first}' listed in {self.ann} not found (looked in: {tried}); "
                f"give the image folder as coco:{self.ann}:IMAGE_DIR"
            )
        missing = [f for f in self.file_names if not (chosen / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.file_names)} images listed in {self.ann} are missing "
                f"from {chosen}, e.g. {missing[:3]}"
            )
        return chosen


def load_coco(
    path: str | None,
    *,
    train: str | None = None,
    validation: str | None = None,
    val: str | None = None,
    test: str | None = None,
    image_size: int | None = 224,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    drop_unlabeled: bool = False,
    on_bad_image: str = "error",
) -> MultiLabelDataset:
    """Load COCO-format annotation file(s) as a multi-label image dataset.

    Args:
        path: ``"ANNOTATION_JSON[:IMAGE_DIR]"`` of the main file (may be None/empty
            when ``train``, ``validation`` and ``test`` are all given).
        train, validation, val, test: Per-split files, same syntax.
        image_size: Side of the square images returned (None: original size).
        seed: Seed of the split of the main file.
        split_fractions: Train/validation/test fractions of that split; fractions of
            splits given by their own file are dropped and the rest renormalised.
        drop_unlabeled: Drop images without annotations (default: keep them, with an
            all-zero label row; the count is in ``info["unlabeled_images"]``).
        on_bad_image: ``"error"`` (default): an image file that cannot be decoded is an error
            naming it; ``"skip"``: such images are left out, counted in ``info["bad_images"]``
            and reported in a :class:`~mlsupcon.data.base.DataWarning`; ``"unchecked"``: the
            images are not decoded when loading (minutes of CPU for all of COCO), and an
            unreadable one fails when training reaches it.

    Raises:
        ValueError: Malformed files, unknown ids, conflicting category definitions,
            or splits that no file provides.
        FileNotFoundError: Annotation file or images not found.
    """
    if val is not None and validation is not None:
        raise ValueError("give the validation file as either validation= or val=, not both")
    if on_bad_image not in ("error", "skip", "unchecked"):
        raise ValueError(f"on_bad_image: expected 'error', 'skip' or 'unchecked', got {on_bad_image!r}")
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    validation = validation if validation is not None else val
    explicit = {k: v for k, v in (("train", train), ("validation", validation), ("test", test)) if v}
    files: dict[str, _CocoFile] = {k: _CocoFile(*parse_coco_spec(v)) for k, v in explicit.items()}
    main = _CocoFile(*parse_coco_spec(path)) if path else None
    missing = [k for k in ("train", "validation", "test") if k not in files]
    if missing and main is None:
        raise ValueError(f"no annotation file for split(s) {missing}: give coco:FILE or {'=, '.join(missing)}=")

    cats = _categories(([main] if main else []) + list(files.values()))
    cat_ids = sorted(cats)
    names = [cats[c][0] for c in cat_ids]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate category names {dup}")

    info: dict[str, Any] = {"files": {k: str(f.ann) for k, f in files.items()}}
    parts = {k: _rows(f, np.arange(len(f.image_ids)), cats) for k, f in files.items()}
    if missing:
        assert main is not None
        parts.update(_seeded_parts(main, missing, cats, split_fractions, seed, info))

    if on_bad_image != "unchecked":
        parts = _readable(parts, on_bad_image, info)
    unlabeled = {k: sum(1 for l in v[1] if not l) for k, v in parts.items()}
    info["unlabeled_images"] = unlabeled
    if drop_unlabeled:
        parts = _labeled_only(parts)
        info["dropped_unlabeled"] = True
    splits = {
        k: Split(k, ImageFiles(v[0], image_size), encode_labels(v[1], names), list(v[2]))
        for k, v in parts.items()
    }
    hier = None
    supers = [cats[c][1] for c in cat_ids]
    if names and all(isinstance(s, str) and s for s in supers):
        hier = LabelHierarchy.from_paths(names, [(s,) for s in supers], level_titles=["supercategory", "category"])
    name = f"coco:{path}" if path else "coco"
    return MultiLabelDataset(name, "image", names, splits, hier, info)


#: One split's rows: image paths, label names per image, image ids.
_Rows = tuple[list[str], list[list[str]], list[str]]


def _categories(coco_files: list[_CocoFile]) -> dict[int, tuple[str, Any]]:
    """One category vocabulary across files (ids must agree): id -> (name, supercategory)."""
    cats: dict[int, tuple[str, Any]] = {}
    for f in coco_files:
        for cid, val_ in f.categories.items():
            if cid in cats and cats[cid][0] != val_[0]:
                raise ValueError(
                    f"category id {cid} is '{cats[cid][0]}' in one file and '{val_[0]}' in {f.ann}"
                )
            cats.setdefault(cid, val_)
    return cats


def _rows(f: _CocoFile, idx: np.ndarray, cats: dict[int, tuple[str, Any]]) -> _Rows:
    paths = [str(f.image_dir / f.file_names[i]) for i in idx]
    labs = [[cats[c][0] for c in sorted(f.labels[i])] for i in idx]
    ids = [str(f.image_ids[i]) for i in idx]
    return paths, labs, ids


def _seeded_parts(main: _CocoFile, missing: list[str], cats: dict[int, tuple[str, Any]],
                  split_fractions: tuple[float, float, float], seed: int, info: dict[str, Any]) -> dict[str, _Rows]:
    """The ``missing`` splits, seeded from the main file (recorded in ``info``)."""
    fr = np.array([split_fractions[i] if k in missing else 0.0
                   for i, k in enumerate(("train", "validation", "test"))])
    if fr.sum() <= 0:
        raise ValueError(f"split_fractions {split_fractions} give nothing to the missing split(s) {missing}")
    fr = fr / fr.sum()
    idx = seeded_split(len(main.image_ids), seed, tuple(fr.tolist()))
    parts = {k: _rows(main, idx[k], cats) for k in missing}
    info["files"]["main"] = str(main.ann)
    info["split"] = {"seeded": missing, "seed": int(seed), "fractions": fr.tolist()}
    return parts


def _labeled_only(parts: dict[str, _Rows]) -> dict[str, _Rows]:
    """The rows of images with at least one label."""
    kept = {}
    for k, (p_, l_, i_) in parts.items():
        keep = [j for j, ls in enumerate(l_) if ls]
        kept[k] = ([p_[j] for j in keep], [l_[j] for j in keep], [i_[j] for j in keep])
    return kept


def _readable(parts: dict[str, tuple[list[str], list[list[str]], list[str]]], on_bad_image: str,
              info: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]], list[str]]]:
    """Decodes every image once: an unreadable one is an error (``on_bad_image="error"``) or
    is dropped and counted in ``info["bad_images"]`` (``"skip"``)."""
    bad = {k: image_problems(v[0]) for k, v in parts.items()}
    total = sum(len(b) for b in bad.values())
    if not total:
        return parts
    split, problems = next((k, b) for k, b in bad.items() if b)
    i, why = next(iter(problems.items()))
    where = f"{parts[split][0][i]} (image id {parts[split][2][i]}, {split} split)"
    if on_bad_image == "error":
        more = f"; {total} unreadable images in all" if total > 1 else ""
        raise ValueError(f"image: cannot read {where}: {why}{more}. Replace or remove it, or leave unreadable "
                         "images out with dataset_options: {on_bad_image: skip}")
    info["bad_images"] = {"skipped": total, "by_split": {k: len(b) for k, b in bad.items()},
                          "examples": [f"{parts[k][0][j]}: {w}" for k, b in bad.items() for j, w in b.items()][:5]}
    warnings.warn(f"skipped {total} unreadable image(s) (on_bad_image: skip), e.g. {where}: {why}", DataWarning,
                  stacklevel=3)
    return {k: tuple([x for j, x in enumerate(col) if j not in bad[k]] for col in v) for k, v in parts.items()}
