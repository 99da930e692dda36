"""No dated measurement in the package's or the extension's sources (issue 20): a number
measured on some machine on some day is a row of ``benchmarks/results/<machine>.csv``
(docs/benchmarks.md), and the source comment names that row (benchmark + machine).

Scanned: every ``.py`` under ``mzsr_fast/`` (``mzsr_fast/kernels`` is ``kernels/``) and
every C++/CUDA source under ``csrc/``.  Flagged: a date (``2026-11-26``) outside a path or
file name, and a line that says "measured" next to a number with a unit.  Allowed: the
notes in :data:`ALLOW`, each a "reasoned, not measured" note (a date, but no measurement).
"""
from __future__ import annotations

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = {"mzsr_fast": (".py",), "kernels": (".py",), "csrc": (".cpp", ".cu", ".cuh", ".h", ".inc")}

#: (path, exact text) of the allowed dated notes: each says its choices are reasoned, not
#: measured (so there is no number to move into a table)
ALLOW = {
    ("csrc/cuda/conv3x3_halo.cu", "Written without a GPU (2026-11-26) and tested on the CPU emulator"),
}

_PATHISH = re.compile(r"\S*/\S*|\S*_(?:19|20)\d\d-\d\d-\d\d\S*")  # paths and dated file names
_DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b")
_MEASURED = re.compile(r"\bmeasured\b", re.I)
_NUMBER_UNIT = re.compile(r"\d(?:[\d.,]*\d)?(?:x|%|\s*(?:ms|s|us|µs|GF/s|TF/s|TFLOP/s|GB/s|GiB|MiB|MB|KB|B/px|dB))"
                          r"(?![\w/])")


def findings(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each dated measurement in ``text``."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        bare = _PATHISH.sub(" ", line)
        if _DATE.search(bare) or (_MEASURED.search(bare) and _NUMBER_UNIT.search(bare)):
            out.append((i, line.strip()))
    return out


def _sources():
    for root, exts in ROOTS.items():
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for f in sorted(files):
                if f.endswith(exts):
                    p = os.path.join(d, f)
                    yield os.path.relpath(p, REPO), p


def test_scanner_flags_dated_measurements():
    """The scanner itself: what it must catch and what it must let through."""
    assert findings("# measured 2026-11-26 on the VM: 5.6 s")
    assert findings("// H100 (2026-11-26): triton 8.0 ms")
    assert findings("    holds ~550 B per pixel, measured 2026-11-26")
    assert findings("# measured on an H100: 46.9 ms < 65.2 ms")
    assert findings("Measured 2.1x faster")
    assert not findings("# rows e2e/adapt_and_upscale_steps10 of benchmarks/results/h100.csv")
    assert not findings("# (runs/kernel_estimate_2026-12-04/exp5_calibration.json)")
    assert not findings("# see cpu_winograd_2026-11-26.json")
    assert not findings("# reasoned, not measured: 2 warps per SM")
    assert not findings("# where it was measured faster (rows ops/conv3x3_fwd_64to64)")


def test_no_dated_measurement_in_sources():
    seen = {root: False for root in ROOTS}
    bad = []
    for rel, path in _sources():
        seen[rel.split("/")[0]] = True
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for n, line in findings(text):
            if not any(rel == p and t in line for p, t in ALLOW):
                bad.append(f"{rel}:{n}: {line}")
    assert all(seen.values()), f"nothing scanned under {[r for r, s in seen.items() if not s]}"
    assert not bad, ("dated measurements in source comments; move them to benchmarks/results/<machine>.csv "
                     "(benchmarks/import_legacy.py) and point to the row:\n" + "\n".join(bad))


@pytest.mark.parametrize("path,text", sorted(ALLOW))
def test_allowed_notes_exist_and_say_not_measured(path, text):
    """Each allowlisted note is still there (no stale entry) and is a "not measured" note."""
    src = open(os.path.join(REPO, path), encoding="utf-8").read()
    assert text in src, f"{path}: allowlisted text not found (remove it from ALLOW)"
    i = src.index(text)
    assert "reasoned, not measured" in src[i: i + 300], f"{path}: the allowed note must say 'reasoned, not measured'"
