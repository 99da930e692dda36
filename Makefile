# mzsr_fast: `make demo` and `make test` do all the set-up on a fresh machine (a virtualenv
# in .venv with torch 2.13.0 CPU, the package installed editable with its compiled
# extension, the test tools).
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' 2>/dev/null) setup.py pyproject.toml mzsr_fast/_build.py

.PHONY: venv demo test bench cuda-check gpu-check clean

venv: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q setuptools wheel ninja pybind11
	$(VPY) -m pip install -q --no-build-isolation -e ".[test,triton,plot]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/mzsr-fast upscale mzsr_fast/data/butterfly_lr_g20.png demo_butterfly_x2.png \
	  --kernel mzsr_fast/data/kernel_g20.npy --hr mzsr_fast/data/butterfly_hr.png --steps 10 --force

test: venv
	$(VPY) -m pytest tests -q

# the whole-call and per-op benchmarks that run here (rows appended to
# benchmarks/results/<machine>.csv), then the README's results block re-rendered from the tables
bench: venv
	mkdir -p .benchmarks
	$(VPY) -m pytest benchmarks/e2e benchmarks/ops --benchmark-only -q -p no:cacheprovider \
	  --benchmark-json .benchmarks/bench_$$(date -u +%Y%m%d_%H%M%S).json
	$(VPY) -m benchmarks.render

# the venv's interpreter (torch headers and nvcc flags), never the system python3 (may lack torch)
cuda-check: venv
	PYTHON=$(abspath $(VPY)) bash scripts/cuda_check.sh

gpu-check:
	bash benchmarks/gpu_check.sh benchmarks/results/gpu_$$(date -u +%Y%m%d)

clean:
	rm -rf build $(VENV) mzsr_fast/_C*.so *.egg-info
