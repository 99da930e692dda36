"""Every script that the tests or the Makefile run uses the venv's interpreter, never a bare
``python3`` (issue 16: on a fresh machine whose system python has no torch, `make test`
failed in scripts/cuda_check.sh).  Shell scripts take ``$PY`` from scripts/python_env.sh
($PYTHON, else .venv/bin/python, else python3 where there is no venv); the Makefile uses
$(VPY); tests use sys.executable."""
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join(REPO, "scripts", "python_env.sh")
#: `python`/`python3` as a command word (not $PYTHON, PYTHONPATH, python_env.sh, ...)
_BARE = re.compile(r"(?<![\w])python3?(?![\w.-])")


def _code(line: str) -> str:
    """A shell line without its comment (a '#' at the start or after a blank)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s#", line, maxsplit=1)[0]


def _bare_pythons(text: str) -> list[str]:
    """Lines calling a python that is not the venv's (.venv/bin/python, $(VENV)/bin/python)."""
    bad = []
    for i, line in enumerate(text.splitlines(), 1):
        code = _code(line)
        for m in _BARE.finditer(code):
            before = code[: m.start()]
            if before.endswith((".venv/bin/", "(VENV)/bin/")):
                continue
            bad.append(f"{i}: {line.strip()}")
    return bad


def _shell_scripts():
    files = sorted(glob.glob(os.path.join(REPO, "scripts", "*.sh"))
                   + glob.glob(os.path.join(REPO, "benchmarks", "*.sh")))
    ci = os.path.join(REPO, ".ci", "run")
    return files + ([ci] if os.path.exists(ci) else [])


def test_the_scan_finds_a_bare_python():
    """The checker itself: these must be flagged, these must not (a checker that can fail)."""
    for line in ['PY="${PYTHON:-python3}"', "python3 -m pytest tests", "x && python -c 1", "/usr/bin/python3 a.py",
                 "timeout 9 python3 b.py", "--args python3 c.py"]:
        assert _bare_pythons(line), line
    for line in ['"$PY" -m pytest', ".venv/bin/python -m pip", "$(VENV)/bin/python x", "export PYTHONPATH=.",
                 "set PYTHON=/path/to/python-with-torch",
                 "source scripts/python_env.sh", "# python3 in a comment", 'echo ok  # then python3']:
        assert not _bare_pythons(line), line


@pytest.mark.parametrize("path", _shell_scripts(), ids=lambda p: os.path.relpath(p, REPO))
def test_shell_scripts_use_no_bare_python(path):
    text = open(path).read()
    bad = _bare_pythons(text)
    if os.path.abspath(path) == HELPER:  # the one fallback: no venv (GPU machines' system torch)
        assert len(bad) == 1 and 'PY="python3"' in bad[0], bad
        return
    assert not bad, f"{os.path.relpath(path, REPO)} calls a bare python (use \"$PY\" from scripts/python_env.sh):\n" \
                    + "\n".join(bad)
    if re.search(r"\$\{?PY\b", text):
        assert "scripts/python_env.sh" in text, f"{path} uses $PY without sourcing scripts/python_env.sh"


def test_makefile_recipes_use_the_venv():
    text = open(os.path.join(REPO, "Makefile")).read()
    recipes = "\n".join(line for line in text.splitlines() if line.startswith("\t"))
    # $(PY) is the system python3 and may only make the venv
    expanded = recipes.replace("$(PY) -m venv", "").replace("$(PY)", "python3")
    expanded = expanded.replace("$(VPY)", ".venv/bin/python")
    bad = _bare_pythons(expanded)
    assert not bad, "Makefile recipes call a python that is not $(VPY):\n" + "\n".join(bad)
    m = re.search(r"^cuda-check:(.*)\n((?:\t.*\n)+)", text, re.M)
    assert m and "venv" in m.group(1), "cuda-check must depend on the venv"
    assert "PYTHON=$(abspath $(VPY))" in m.group(2) and "scripts/cuda_check.sh" in m.group(2)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_cuda_check_passes_the_venv_python():
    # run under `make test` too: a sub-make inherits MAKEFLAGS/MAKELEVEL and would print
    # "make[1]: Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    r = subprocess.run(["make", "-n", "--no-print-directory", "cuda-check"], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "cuda_check.sh" in line]
    want = f"PYTHON={os.path.join(REPO, '.venv', 'bin', 'python')} bash scripts/cuda_check.sh"
    assert lines == [want], r.stdout


def test_tests_use_sys_executable():
    """No test starts a python found on PATH (["python3", ...] or "python -m ..." commands)."""
    call = re.compile(r"""\[\s*["']python3?["']|["']python3?\s+-""")
    bad = []
    for f in sorted(glob.glob(os.path.join(REPO, "tests", "*.py"))):
        if os.path.basename(f) == os.path.basename(__file__):
            continue
        for i, line in enumerate(open(f), 1):
            if call.search(line) and not line.lstrip().startswith("#"):
                bad.append(f"{os.path.basename(f)}:{i}: {line.strip()}")
    assert not bad, "tests must run sys.executable, not a python from PATH:\n" + "\n".join(bad)


@pytest.fixture()
def fake_system_python(tmp_path):
    """A PATH whose python3 is a system python without torch (it fails every call)."""
    b = tmp_path / "bin"
    b.mkdir()
    (b / "python3").write_text("#!/bin/sh\necho 'fake system python3: no torch' >&2\nexit 3\n")
    (b / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = f"{b}{os.pathsep}{env.get('PATH', '')}"
    return env


def _resolve(root, env):
    return subprocess.run(["bash", "-c", f'source "{root}/scripts/python_env.sh"; echo "$PY"; require_torch; echo ok'],
                          capture_output=True, text=True, env=env, timeout=120)


def test_python_env_prefers_python_then_the_venv(tmp_path, fake_system_python):
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(HELPER, root / "scripts")
    env = fake_system_python
    # no venv: python3 from PATH, and a clear one-line error when it has no torch
    r = _resolve(root, env)
    assert r.stdout.splitlines()[0] == "python3" and r.returncode == 2
    assert "cannot import torch" in r.stderr and "make venv" in r.stderr
    # a venv: its python, though python3 on PATH exists
    (root / ".venv" / "bin").mkdir(parents=True)
    venv_py = root / ".venv" / "bin" / "python"  # a wrapper: a symlink would lose the venv's site-packages
    venv_py.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    venv_py.chmod(0o755)
    r = _resolve(root, env)
    assert r.returncode == 0 and r.stdout.split() == [str(root / ".venv" / "bin" / "python"), "ok"], r.stderr
    # $PYTHON wins
    r = _resolve(root, dict(env, PYTHON=sys.executable))
    assert r.returncode == 0 and r.stdout.split() == [sys.executable, "ok"], r.stderr


def test_cuda_check_never_reaches_a_torchless_python3(tmp_path, fake_system_python):
    """scripts/cuda_check.sh in a checkout without a venv and with a torch-less python3
    stops at once with the reason (before compiling anything)."""
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "scripts"), root / "scripts", ignore=shutil.ignore_patterns("*.py"))
    r = subprocess.run(["bash", str(root / "scripts" / "cuda_check.sh")], capture_output=True, text=True,
                       env=dict(fake_system_python, NVCC="true"), timeout=120)
    assert r.returncode == 2 and "cannot import torch" in r.stderr, (r.stdout, r.stderr)
