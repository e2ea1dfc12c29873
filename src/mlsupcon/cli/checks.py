"""Checks of a command's arguments that run before anything heavy is loaded (no torch at import).

``predict`` / ``embed`` / ``export`` call these before they load the model (seconds), so that a
wrong ``--output`` or ``--device`` is reported at once, and never after the scoring work.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> src = os.path.join(folder, "a.jsonl")
    >>> _ = open(src, "w").write("{}\\n")
    >>> try:
    ...     check_output_file(src, src, (".jsonl",), "predict")
    ... except ValueError as exc:
    ...     print(str(exc).split(";")[0].replace(folder, "DIR"))
    output: DIR/a.jsonl is the --input file
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: device: expected cpu, cuda or cuda:N (or mps), got 'gpu'
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence

__all__ = ["check_accelerator", "check_device", "check_output_file", "OutputSuffixWarning"]

_DEVICE = re.compile(r"^(cpu|mps|cuda)(:\d+)?$")


class OutputSuffixWarning(UserWarning):
    """The ``--output`` name ends in a suffix that says another format than the one written
    (an ``mlsupcon.*`` warning: the CLI prints it as one ``mlsupcon: warning:`` line)."""


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same path through links, or hard links to one inode."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_output_file(output: str | os.PathLike, input_path: str | os.PathLike | None,
                      suffixes: Sequence[str], command: str) -> Path:
    """Refuses an ``--output`` that would destroy data or fail after the work; warns on a suffix
    that names another format than the ``suffixes`` the command writes.

    Raises:
        ValueError: one line naming ``--output``: it is an existing folder, the ``--input`` file
            itself (also through a symbolic or hard link), inside the ``--input`` folder's files
            or in a folder that cannot be created.
    """
    out = Path(output).expanduser()
    if out.is_dir():
        raise ValueError(f"output: {out} is a folder; --output names the file {command} writes "
                         f"(e.g. {out / ('predictions' + suffixes[0])})")
    if input_path is not None:
        src = Path(input_path).expanduser()
        if src.is_file() and _same_file(out, src):
            raise ValueError(f"output: {out} is the --input file; {command} would overwrite its own input: "
                             "choose another --output")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output: cannot create {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output: cannot write {out}: no permission to write in {parent}")
    name = out.name.lower()
    if not any(name.endswith(s) for s in suffixes):
        warnings.warn(f"{command} writes {suffixes[0].lstrip('.').upper()}; --output {out} has another suffix "
                      f"({out.suffix or 'none'}): the file is {suffixes[0].lstrip('.').upper()} all the same",
                      OutputSuffixWarning, stacklevel=2)
    return out


def check_device(device: str) -> str:
    """``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine.

    Imports torch only for ``cuda`` / ``mps`` (to ask whether the device is there).

    Raises:
        ValueError: one line naming the device and what this machine has.
    """
    value = str(device).strip().lower()
    if not _DEVICE.match(value):
        raise ValueError(f"device: expected cpu, cuda or cuda:N (or mps), got {device!r}")
    kind, _, index = value.partition(":")
    if kind == "cpu":
        return value
    import torch

    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device: 'mps' is not available on this machine; use --device cpu")
        return value
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"device: {device!r} asked for a GPU but {why} (torch {torch.__version__}); "
                         "use --device cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ValueError(f"device: {device!r} does not exist: this machine has {count} CUDA device(s) "
                         f"(cuda:0..cuda:{count - 1})")
    return value


def check_accelerator(accelerator: str) -> None:
    """``train --accelerator``: a GPU asked for on a machine without one is refused before the
    data is read (Lightning would refuse it only once the run has started).

    Raises:
        ValueError: one line naming the accelerator and what this machine has.
    """
    value = str(accelerator).strip().lower()
    if value in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"accelerator: {accelerator!r} asked for a GPU but {why} (torch {torch.__version__}); "
                             "use --accelerator cpu (or auto)")
    elif value == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("accelerator: 'mps' is not available on this machine; use --accelerator cpu (or auto)")
