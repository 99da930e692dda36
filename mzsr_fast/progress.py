"""One progress convention for every long loop (folder of images, tiles of a large image,
ZSSR iterations, training).

Every API function with long work takes ``progress``:

* ``None`` (default): a tqdm bar on stderr **only when stderr is a terminal**; nothing is
  printed when output goes to a file or a pipe (CI logs, pipelines);
* ``False``: off; ``True``: a bar even when stderr is not a terminal;
* a callable ``progress(done: int, total: int, desc: str)``: called after each unit of
  work (also once with ``done=0`` at the start), no bar; for GUIs and pipelines.

    with make_progress(len(files), "upscale", progress) as bar:
        for f in files:
            ...
            bar.update(1)
"""
from __future__ import annotations

import sys
from typing import Callable, Union

__all__ = ["ProgressArg", "make_progress", "check_progress"]

ProgressArg = Union[None, bool, Callable[[int, int, str], object]]


def check_progress(progress: ProgressArg, what: str = "progress") -> ProgressArg:
    """Validate a ``progress`` argument (None, True/False or a callable); ``ValueError`` otherwise."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise ValueError(f"{what} must be None, True, False or a callable(done, total, desc), got {progress!r}")


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def write(self, s: str) -> None:
        print(s, file=sys.stderr)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class _Callback(_Null):
    def __init__(self, fn, total: int, desc: str):
        self.fn, self.total, self.desc, self.done = fn, int(total), desc, 0
        fn(0, self.total, desc)

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        self.fn(self.done, self.total, self.desc)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_progress(total: int, desc: str, progress: ProgressArg = None, *, unit: str = "it", leave: bool = False):
    """A context manager with ``update(n)``, ``set_postfix_str(s)``, ``write(s)``, ``close()``:
    a tqdm bar, a callback adapter or a no-op, per ``progress`` (module docstring)."""
    check_progress(progress)
    if callable(progress) and not isinstance(progress, bool):
        return _Callback(progress, total, desc)
    show = progress if isinstance(progress, bool) else _is_tty(sys.stderr)
    if not show:
        return _Null()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
