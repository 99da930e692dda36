"""The one benchmark harness: machine facts, providers, rounds, and the results table.

Every benchmark under ``benchmarks/{ops,e2e,quality}`` is a pytest-benchmark test that
times with ``benchmark.pedantic`` and then calls :func:`record`; at the end of the session
``benchmarks/conftest.py`` appends one row per (benchmark, provider, size) to the machine's
append-only table ``benchmarks/results/<machine>.csv`` (:data:`COLUMNS`), and
``benchmarks/render.py`` renders the README's headline table and the plots from those
tables.  pytest-benchmark's own JSON (``--benchmark-json``) carries :func:`machine_info`.

Environment:
  MZSR_BENCH_DEVICE    cpu | cuda (default: cuda if available)
  MZSR_BENCH_ROUNDS    timed rounds (default: per benchmark, small on CPU)
  MZSR_BENCH_MACHINE   the machine kind naming the CSV (default: from the GPU or CPU name)
  MZSR_FAST_DATA       the data folder (default ../shared/data beside the repository)
"""
from __future__ import annotations

import csv
import io
import os
import re
import statistics
import subprocess
import time

# the package's machine facts (``mzsr-fast info`` / ``eval --json`` report the same ones)
from mzsr_fast.machine import machine_info  # noqa: F401  (part of the harness API)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
#: the results table's columns; ``median``/``min``/``max`` in ``unit`` (seconds for timings)
COLUMNS = ("date", "commit", "benchmark", "provider", "size", "median", "min", "max", "unit", "source")


# ----------------------------------------------------------------------------- machine
def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def machine_kind(info: dict | None = None) -> str:
    """The name of this machine's results table: ``$MZSR_BENCH_MACHINE``, else the GPU's
    model (``"NVIDIA H100 80GB HBM3"`` -> ``h100``), else the CPU's model and core count
    (``"Intel(R) Xeon(R) Processor"``, 2 cores -> ``cpu-intel-xeon-processor-2c``)."""
    env = os.environ.get("MZSR_BENCH_MACHINE", "").strip()
    if env:
        if _slug(env) != env:
            raise ValueError(f"MZSR_BENCH_MACHINE={env!r}: use lower-case letters, digits and '-' only")
        return env
    info = machine_info() if info is None else info
    gpu = info.get("gpu")
    if gpu:
        m = re.search(r"\b([A-Z]+[0-9]{2,4}[A-Z]?)\b", gpu.replace("NVIDIA", ""))
        return _slug(m.group(1)) if m else _slug(gpu)
    cpu = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|@.*$|[0-9]+-Core", " ", info.get("cpu", "cpu"))
    return f"cpu-{_slug(cpu)}-{info.get('cpu_count') or 0}c"


def git_commit(root: str = ROOT) -> str:
    """Short hash of HEAD, ``+dirty`` when tracked sources differ from it; ``unknown`` outside git."""
    try:
        h = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True,
                           check=True, timeout=10).stdout.strip()
        d = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "mzsr_fast", "csrc"],
                           cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return h + ("+dirty" if d else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- settings
def device() -> str:
    import torch

    return os.environ.get("MZSR_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")


def on_cuda() -> bool:
    return device().startswith("cuda")


def rounds(cpu: int, cuda: int) -> int:
    """``$MZSR_BENCH_ROUNDS``, else ``cpu`` / ``cuda`` by device (>= 1)."""
    r = int(os.environ.get("MZSR_BENCH_ROUNDS", cuda if on_cuda() else cpu))
    if r < 1:
        raise ValueError(f"MZSR_BENCH_ROUNDS must be >= 1, got {r}")
    return r


def env_list(var: str, default: str, kind=str) -> list:
    """Comma list from ``$var`` (else ``default``), each item through ``kind``."""
    raw = os.environ.get(var, default)
    try:
        return [kind(s.strip()) for s in raw.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{var}={raw!r}: expected a comma list of {kind.__name__}") from None


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def default_data_dir() -> str:
    """``$MZSR_FAST_DATA``, else ``../shared/data`` beside the repository."""
    return os.path.normpath(os.environ.get("MZSR_FAST_DATA", os.path.join(ROOT, "..", "shared", "data")))


def set5_g20(data_dir: str | None = None):
    """The official Set5 g^d_2.0 LR images with their HR: ``(kernel (21, 21) float64,
    {name: (lr (h, w, 3) uint8, hr (2h, 2w, 3) uint8)})`` from ``set5_g20/`` and ``set5/``."""
    import numpy as np
    import scipy.io
    from PIL import Image

    d = data_dir or default_data_dir()
    k = scipy.io.loadmat(os.path.join(d, "set5_g20", "kernel.mat"))["kernel"]
    names = sorted(n for n in os.listdir(os.path.join(d, "set5_g20")) if n.endswith(".png"))
    imgs = {n: tuple(np.asarray(Image.open(os.path.join(d, sub, n)).convert("RGB")) for sub in ("set5_g20", "set5"))
            for n in names}
    return k, imgs


def sgemm_gflops(n: int = 2048, device: str = "cpu", repeat: int = 5) -> float:
    """Measured fp32 matmul rate (GFLOP/s) of an n x n x n product, best of ``repeat``."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeat + 1):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def gpu_adapt_case(size: int, steps: int, seed: int = 0):
    """The synthetic GPU timing case of the profiling tools: ``(device, params, x, target,
    up, schedule)`` with random ``x`` / ``target`` ``(1, 3, size, size)`` and ``up``
    ``(1, 3, 2 size, 2 size)`` float32 on CUDA, seed-0 initial params and the default
    ``steps``-step schedule; ``None`` (after printing "needs CUDA") without a GPU.  Turns
    ``cudnn.benchmark`` on for the reference."""
    import torch

    from mzsr_fast import model
    from mzsr_fast.api import default_lr_schedule

    if not torch.cuda.is_available():
        print("needs CUDA")
        return None
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g).to(dev)
    t = torch.rand(1, 3, size, size, generator=g).to(dev)
    up = torch.rand(1, 3, 2 * size, 2 * size, generator=g).to(dev)
    return dev, model.init_params(0, device=dev), x, t, up, default_lr_schedule(steps)


# ----------------------------------------------------------------------------- providers
#: backend -> precisions benchmarked, by device kind.  ``"bf16:2"`` / ``"bf16:3"``: the cuda
#: backend's conv kernel variants (``MZSR_FAST_CUDA_VARIANT``).
PRECISIONS = {
    "cpu": {"reference": ("fp32",), "cpu": ("fp32", "bf16"), "triton": (), "cuda": ()},
    "cuda": {"reference": ("tf32", "fp32"), "cpu": (), "triton": ("bf16", "tf32"),
             "cuda": ("bf16", "tf32", "bf16:2", "bf16:3")},
}


def providers(kinds=("reference", "cpu", "triton", "cuda")) -> list[str]:
    """Provider ids ``<backend>_<precision>`` for this device, every backend listed whether
    available or not (:func:`provider_skip` says why one cannot run here)."""
    dev = "cuda" if on_cuda() else "cpu"
    out = []
    for name in kinds:
        precs = PRECISIONS[dev][name] or (("fp32",) if name != "reference" else ())
        out += [f"{name}_{p}" for p in precs]
    return out


def split_provider(provider: str) -> tuple[str, str, str]:
    """``"cuda_bf16:3"`` -> ``("cuda", "bf16", "3")``; variant ``"0"`` when none is given."""
    name, prec = provider.split("_", 1)
    prec, _, variant = prec.partition(":")
    return name, prec, variant or "0"


def provider_skip(provider: str) -> str | None:
    """Why ``provider`` cannot run on this machine (None: it can)."""
    from mzsr_fast import backends

    name, prec, _ = split_provider(provider)
    if name == "triton" and not on_cuda():
        return "triton: benchmarked on CUDA only (on the CPU it runs in its interpreter, a test tool)"
    ok, why = backends.available(device()).get(name, (False, f"unknown backend {name!r}"))
    if not ok:
        return f"{name}: {why}"
    if name == "cpu" and prec not in backends._load("cpu").precisions:
        return f"cpu: precision {prec} not supported on this CPU"
    return None


class cuda_variant:
    """Context: ``MZSR_FAST_CUDA_VARIANT`` set to a provider's variant, restored after."""

    def __init__(self, variant: str):
        self.variant = variant

    def __enter__(self):
        self.old = os.environ.get("MZSR_FAST_CUDA_VARIANT")
        os.environ["MZSR_FAST_CUDA_VARIANT"] = self.variant

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("MZSR_FAST_CUDA_VARIANT", None)
        else:
            os.environ["MZSR_FAST_CUDA_VARIANT"] = self.old


def set_tf32(on: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


# ----------------------------------------------------------------------------- results
#: what :func:`record` collected in this process: (benchmark, provider, size, unit, values)
RECORDS: list[tuple[str, str, str, str, list[float]]] = []


def record(benchmark, name: str, provider: str, size, unit: str = "s", scale: float = 1.0,
           metrics: dict | None = None, flops: float | None = None, **extra) -> None:
    """After ``benchmark.pedantic(...)``: note its raw round times (times ``scale``, e.g.
    ``1 / calls_per_round``) as ``name`` / ``provider`` / ``size`` for the results table,
    and put the same keys (plus ``extra``) into pytest-benchmark's ``extra_info``.
    ``metrics``: ``{metric: (value, unit)}`` recorded as rows ``name/metric`` (e.g. a PSNR).
    ``flops``: work of one timed call; ``extra_info["gflops_per_s"]`` from the median.
    Nothing is recorded when benchmarking is disabled (``--benchmark-disable``)."""
    benchmark.extra_info.update(benchmark=name, provider=provider, size=str(size), **extra)
    for m, (v, u) in (metrics or {}).items():
        benchmark.extra_info[m] = v
    st = getattr(benchmark, "stats", None)
    if st is None or not getattr(st, "stats", None) or not st.stats.data:
        return
    vals = [t * scale for t in st.stats.data]
    if flops:
        benchmark.extra_info["gflops_per_s"] = flops / statistics.median(vals) / 1e9
    RECORDS.append((name, provider, str(size), unit, vals))
    for m, (v, u) in (metrics or {}).items():
        RECORDS.append((f"{name}/{m}", provider, str(size), u, [float(v)]))


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def aggregate(records, date: str, commit: str, source: str) -> list[dict]:
    """Records -> rows (one per benchmark/provider/size, in first-seen order): the median,
    min and max over all the values recorded for it (e.g. every interleaved round)."""
    groups: dict[tuple, list] = {}
    units: dict[tuple, str] = {}
    for name, prov, size, unit, vals in records:
        key = (name, prov, size)
        groups.setdefault(key, []).extend(vals)
        units[key] = unit
    return [dict(date=date, commit=commit, benchmark=k[0], provider=k[1], size=k[2], median=_fmt(statistics.median(v)),
                 min=_fmt(min(v)), max=_fmt(max(v)), unit=units[k], source=source) for k, v in groups.items()]


def append_rows(path: str, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first if the file is new).  The table
    is append-only: an existing file whose header is not :data:`COLUMNS` is an error, and
    all rows go out in one write (no half-written table if the process is killed)."""
    if not rows:
        return
    for r in rows:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise ValueError(f"row {r} lacks columns {missing}")
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="") as f:
            head = next(csv.reader(f), None)
        if tuple(head or ()) != COLUMNS:
            raise ValueError(f"{path}: header {head} is not {list(COLUMNS)}; not appending")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    if new:
        w.writeheader()
    w.writerows(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for c in ("median", "min", "max"):
            r[c] = float(r[c])
    return rows


def results_csv(machine: str | None = None) -> str:
    return os.path.join(RESULTS, f"{machine or machine_kind()}.csv")
