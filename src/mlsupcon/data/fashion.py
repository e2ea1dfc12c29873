"""``fashion-mosaic``: a real-image multi-label set built from Fashion-MNIST.

Each example is a 2×2 mosaic (56×56 pixels, greyscale replicated to 3 channels) of
four Fashion-MNIST items; its labels are the set of classes present. To get a
varied number of labels per image, every mosaic first draws ``k`` ∈ {1, …,
``max_classes``} uniformly, then ``k`` distinct classes, gives each class one cell
and fills the remaining cells with items of those same classes, then shuffles the
cells. So an image has exactly ``k`` labels, with ``k`` uniform on 1–4 by default.

Items: train and validation mosaics use disjoint halves of the Fashion-MNIST
training images (a seeded 50,000 / 10,000 partition), test mosaics use the
Fashion-MNIST test images, so no item appears in two splits. Every split is
generated from its own seeded stream: changing ``train_size`` leaves the
validation and test sets unchanged.

The images come from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz``).

Hierarchy (``["group", "class"]``): clothing = T-shirt/top, Trouser, Pullover,
Dress, Coat, Shirt; footwear = Sandal, Sneaker, Ankle boot; bags = Bag.

Example:
    >>> ds = load_fashion_mosaic(train_size=100, validation_size=20, test_size=20)  # doctest: +SKIP
    >>> ds.splits["train"].inputs[0].shape                                         # doctest: +SKIP
    (56, 56, 3)
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import MultiLabelDataset, Split, encode_labels, split_seed
from .hierarchy import LabelHierarchy
from .images import ImageArray

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_GROUPS", "DEFAULT_FASHION_ROOT", "load_fashion_mosaic",
           "read_fashion_mnist"]

DEFAULT_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

FASHION_GROUPS = {
    "T-shirt/top": "clothing",
    "Trouser": "clothing",
    "Pullover": "clothing",
    "Dress": "clothing",
    "Coat": "clothing",
    "Shirt": "clothing",
    "Sandal": "footwear",
    "Sneaker": "footwear",
    "Ankle boot": "footwear",
    "Bag": "bags",
}

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


@lru_cache(maxsize=4)
def _read_part(root: str, part: str, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    r = Path(root)
    img_stem, lab_stem = _FILES[part]
    ip, lp = _find(r, img_stem), _find(r, lab_stem)
    assert ip is not None and lp is not None
    images, labels = _read_idx(ip), _read_idx(lp)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"Fashion-MNIST {part} files in {root} disagree: {images.shape} vs {labels.shape}")
    return images, labels


def read_fashion_mnist(root: str | os.PathLike = DEFAULT_FASHION_ROOT,
                       part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``uint8 [n, 28, 28]`` and labels ``uint8 [n]`` (cached).

    Args:
        root: Folder with the four ``*-idx?-ubyte(.gz)`` files.
        part: ``"train"`` (60,000) or ``"test"`` (10,000).

    Raises:
        FileNotFoundError: The files are missing; the message says how to install them.
    """
    if part not in _FILES:
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    r = Path(root).expanduser()
    missing = [s for pair in _FILES.values() for s in pair if _find(r, s) is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found in {r} (missing: {', '.join(m + '.gz' for m in missing)}). "
            f"Install them with the Debian package: sudo apt-get install -y dataset-fashion-mnist "
            f"(or pass root=DIR holding the four *-ubyte.gz files)"
        )
    ip = _find(r, _FILES[part][0])
    assert ip is not None
    return _read_part(str(r), part, ip.stat().st_mtime)


def _make_mosaics(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    max_classes: int,
) -> tuple[np.ndarray, list[list[int]]]:
    by_class = [pool[labels[pool] == c] for c in range(10)]
    out = np.empty((n, 56, 56), dtype=np.uint8)
    label_sets: list[list[int]] = []
    ks = rng.integers(1, max_classes + 1, size=n)
    for i in range(n):
        k = int(ks[i])
        classes = rng.choice(10, size=k, replace=False)
        cells = np.concatenate([classes, rng.choice(classes, size=4 - k)])
        rng.shuffle(cells)
        for j, c in enumerate(cells):
            items = by_class[int(c)]
            item = items[rng.integers(len(items))]
            r0, c0 = (j // 2) * 28, (j % 2) * 28
            out[i, r0 : r0 + 28, c0 : c0 + 28] = images[item]
        label_sets.append(sorted(int(c) for c in classes))
    return out, label_sets


def load_fashion_mosaic(
    *,
    root: str = DEFAULT_FASHION_ROOT,
    train_size: int = 8000,
    validation_size: int = 1000,
    test_size: int = 1000,
    max_classes: int = 4,
    image_size: int | None = None,
    seed: int = 0,
) -> MultiLabelDataset:
    """Build the Fashion-MNIST mosaic multi-label set (see module docstring).

    Args:
        root: Folder with the Fashion-MNIST IDX files.
        train_size, validation_size, test_size: Number of mosaics per split.
        max_classes: Largest number of distinct classes per mosaic (1–4).
        image_size: Resize the 56×56 mosaics on access (None: keep 56).
        seed: Seed of the item partition and of every split's generator.

    Returns:
        An ``"image"`` dataset; inputs are in-memory :class:`ImageArray` s.
    """
    for nm, v in (("train_size", train_size), ("validation_size", validation_size), ("test_size", test_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{nm} must be a positive integer, got {v!r}")
    if not 1 <= int(max_classes) <= 4:
        raise ValueError(f"max_classes must be 1..4 (a mosaic has 4 cells), got {max_classes!r}")
    tr_img, tr_lab = read_fashion_mnist(root, "train")
    te_img, te_lab = read_fashion_mnist(root, "test")
    perm = split_seed(seed, "fashion-pool").permutation(tr_img.shape[0])
    n_val_pool = tr_img.shape[0] // 6  # 10,000 of 60,000
    pools = {
        "train": (tr_img, tr_lab, np.sort(perm[n_val_pool:])),
        "validation": (tr_img, tr_lab, np.sort(perm[:n_val_pool])),
        "test": (te_img, te_lab, np.arange(te_img.shape[0])),
    }
    sizes = {"train": int(train_size), "validation": int(validation_size), "test": int(test_size)}
    splits = {}
    for name, (img, lab, pool) in pools.items():
        arr, sets = _make_mosaics(img, lab, pool, sizes[name], split_seed(seed, name), int(max_classes))
        label_lists = [[FASHION_MNIST_CLASSES[c] for c in s] for s in sets]
        splits[name] = Split(
            name,
            ImageArray(arr, image_size),
            encode_labels(label_lists, FASHION_MNIST_CLASSES),
            [f"{name}-{i}" for i in range(sizes[name])],
        )
    hier = LabelHierarchy.from_paths(
        FASHION_MNIST_CLASSES,
        [(FASHION_GROUPS[c],) for c in FASHION_MNIST_CLASSES],
        level_titles=["group", "class"],
    )
    info = {
        "source": str(Path(root).expanduser()),
        "sizes": sizes,
        "max_classes": int(max_classes),
        "seed": int(seed),
    }
    return MultiLabelDataset("fashion-mosaic", "image", list(FASHION_MNIST_CLASSES), splits, hier, info)
