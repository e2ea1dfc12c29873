"""Image collections used as ``Split.inputs`` for image datasets.

Both containers support ``len()``, ``container[i]`` → ``uint8`` array ``[H, W, 3]``
and ``container.subset(indices)``; both pickle cheaply, so they can be used inside
DataLoader worker processes. :func:`images_to_tensor` turns a list of such arrays
into the float ``[B, 3, H, W]`` batch that :class:`~mlsupcon.data.views.ImageViews`
expects.

Example:
    >>> import numpy as np
    >>> arr = ImageArray(np.zeros((2, 28, 28), dtype=np.uint8))
    >>> arr[0].shape, len(arr)
    ((28, 28, 3), 2)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # reading images needs no torch
    import torch

__all__ = ["ImageArray", "ImageFiles", "images_to_tensor", "image_problem", "image_problems"]


def _resize(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or (img.shape[0] == size and img.shape[1] == size):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


class ImageArray:
    """In-memory images; greyscale ``[n, H, W]`` storage is replicated to 3 channels on access.

    Args:
        array: ``uint8`` array ``[n, H, W]`` (greyscale) or ``[n, H, W, 3]``.
        size: If given, images are resized to ``size × size`` when accessed.

    Example:
        >>> import numpy as np
        >>> ImageArray(np.zeros((1, 56, 56), np.uint8), size=32)[0].shape
        (32, 32, 3)
    """

    def __init__(self, array: np.ndarray, size: int | None = None) -> None:
        array = np.asarray(array)
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] != 3):
            raise ValueError(
                f"ImageArray needs uint8 [n, H, W] or [n, H, W, 3], got {array.dtype} {array.shape}"
            )
        self.array = array
        self.size = size

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        img = self.array[int(i)]
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return _resize(img, self.size)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageArray:
        """A new container holding the given rows (copied)."""
        return ImageArray(self.array[np.asarray(indices, dtype=np.int64)], self.size)

    def __repr__(self) -> str:
        return f"ImageArray(n={len(self)}, stored={tuple(self.array.shape[1:])}, size={self.size})"


class ImageFiles:
    """Images read lazily from files with PIL, converted to RGB and resized.

    Args:
        paths: One file path per image.
        size: Images are resized to ``size × size`` (aspect ratio not kept, as in the
            usual multi-label COCO setups); None keeps the original size.

    Raises:
        FileNotFoundError: On access, naming the missing file.
    """

    def __init__(self, paths: Sequence[str], size: int | None = 224) -> None:
        self.paths = [str(p) for p in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from PIL import Image

        path = self.paths[int(i)]
        if not os.path.exists(path):
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.size is not None:
                    im = im.resize((self.size, self.size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8).copy()
        except OSError as e:
            raise OSError(f"cannot read image {path}: {e}") from e

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageFiles:
        """A new container over the given rows."""
        return ImageFiles([self.paths[int(i)] for i in indices], self.size)

    def __repr__(self) -> str:
        return f"ImageFiles(n={len(self)}, size={self.size})"


def image_problem(path: str) -> str | None:
    """Why the image file at ``path`` cannot be read (None: it can).

    The whole file is decoded (a truncated file fails only there), JPEGs at 1/8 scale: their
    decoder then skips most of the work but still reads every byte.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except FileNotFoundError:
        return "file not found"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return " ".join(str(e).split()) or type(e).__name__
    return None


def image_problems(paths: Sequence[str], workers: int | None = None) -> dict[int, str]:
    """``{index: problem}`` of the unreadable files among ``paths`` (:func:`image_problem`),
    checked by a few threads (PIL decodes without the GIL).

    Example:
        >>> image_problems([])
        {}
    """
    from concurrent.futures import ThreadPoolExecutor

    if not paths:
        return {}
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(image_problem, paths, chunksize=64)
        return {i: p for i, p in enumerate(found) if p is not None}


def images_to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Stack ``uint8 [H, W, 3]`` images into a float tensor ``[B, 3, H, W]`` in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> images_to_tensor([np.full((4, 4, 3), 255, np.uint8)]).amax().item()
        1.0
    """
    import torch

    arr = np.stack([np.asarray(im) for im in images]) if not isinstance(images, np.ndarray) else images
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
