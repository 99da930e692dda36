# Sourced (not run) by the shell scripts of this repo: sets PY, the Python interpreter to use.
#   1. $PYTHON when set (tests pass sys.executable, make passes $(VPY));
#   2. else the project's venv, .venv/bin/python (made by `make venv`), when it exists;
#   3. else python3 on PATH: machines without the venv, e.g. the GPU machines, whose system
#      Python carries the CUDA build of torch.
# Never python3 while the venv exists: a fresh machine's system python may have no torch
# (issue 16: `make test` failed there).  tests/test_scripts_interpreter.py checks that no
# other script calls a bare python3.
# Also defines require_torch: exits 2 with a one-line reason if $PY cannot import torch.
_MZSR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$_MZSR_ROOT/.venv/bin/python" ]; then
  PY="$_MZSR_ROOT/.venv/bin/python"
else
  PY="python3"
fi
require_torch() {
  "$PY" -c "import torch" 2>/dev/null || {
    echo "$(basename "$0"): $PY cannot import torch: run 'make venv' or set PYTHON=/path/to/python-with-torch" >&2
    exit 2
  }
}
