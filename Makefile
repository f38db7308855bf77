# Two commands, from a fresh clone on a machine with or without a GPU:
#   make demo   set up .venv and run every shipped example, checked against its float64 reference
#   make test   set up .venv and run the whole test suite
# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA wheels on a CPU machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint compat

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/tilec demo

test: setup
	$(PY) -m pytest -q -n 2 tests

lint: setup
	$(PY) -m ruff check tilec tests
	$(PY) -m mypy

# The GPU machines run torch 2.11, which pins Triton 3.6: prove the interpreter path and the
# ahead-of-time compiles (sm_80/sm_90, tensor cores, no spills) under it too, without a GPU.
VENV36 := .venv-triton36
$(VENV36)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV36)
	$(VENV36)/bin/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(VENV36)/bin/python -m pip install --quiet "triton==3.6.0" lark sympy numpy pytest pytest-xdist hypothesis "ml_dtypes>=0.7"
	touch $@

compat: $(VENV36)/.installed
	PYTHONPATH=$(CURDIR) $(VENV36)/bin/python -m pytest -q -n 2 -p no:cacheprovider \
		tests/runtime/test_examples_interpreter.py tests/codegen/test_aot.py \
		tests/runtime/test_quant_gemm.py tests/test_ops_linear.py tests/codegen/test_split_k.py \
		tests/test_ops_act_quant.py tests/runtime/test_w4a8.py tests/test_ops_w4a8.py \
		tests/runtime/test_scaled_gemm.py tests/passes/test_block_scaled_dot.py \
		tests/codegen/test_sass_w4a16.py tests/runtime/test_quant_gemm_lean.py tests/codegen/test_sass_w4a8.py \
		tests/codegen/test_aot_attention.py tests/test_ops_attention_interp.py tests/passes/test_online_softmax.py \
		tests/ir/test_grid_gather_dim.py tests/codegen/test_magic_cast.py tests/test_ops_decode.py
