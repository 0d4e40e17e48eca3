# The two commands of the README: `make run` and `make test`. Both do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MiniLM exported to ONNX from the package's own weights, so the app embeds without torch (coach/embedder.py)
ONNX := $(or $(COACH_MODEL_CACHE),.cache)/all-minilm-l6-v2.onnx
# The grader's mistake model (coach/mistakes.py), trained from evals/sets/mistake_pairs.jsonl and exported to ONNX
MISTAKES := $(or $(COACH_MODEL_CACHE),.cache)/mistake-model.onnx
# The grader's credit model (coach/credit.py), trained from the blind and training answers' labels and the bank's wording
CREDIT := $(or $(COACH_MODEL_CACHE),.cache)/credit-model.onnx
# The grader's naming constants chosen for that credit model (and the mistake model) on the naming-tuned answers
CALIBRATION := $(or $(COACH_MODEL_CACHE),.cache)/credit-model.json
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test lint index clean browser bench

## setup: virtual environment + requirements + ONNX export of MiniLM + the grader's two models + index
## (idempotent; seconds when done)
setup: $(STAMP) $(ONNX) $(MISTAKES) $(CREDIT) $(CALIBRATION) index

# llama.cpp's AMX matrix kernels crash on CPUs that have AMX (Sapphire Rapids and later: SIGSEGV in
# ggml_backend_amx_mul_mat at the first token, ggml-org/llama.cpp#20824; seen on this project's machines),
# so llama-cpp-python is compiled without them: gcc and clang let an explicit -mno-* win over -march=native.
# A wheel built earlier with them (pip keeps built wheels) is rebuilt once.
NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
PIP_BUILD := CFLAGS="$$CFLAGS $(NO_AMX)" CXXFLAGS="$$CXXFLAGS $(NO_AMX)" $(PY) -m pip install --disable-pip-version-check
LLAMA_REQ := $(shell grep -o '^llama-cpp-python[^ ]*' requirements.txt)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_BUILD) -r requirements.txt
	@$(PY) -c "import sys, llama_cpp; sys.exit(b'AMX_INT8 = 1' in llama_cpp.llama_print_system_info())" \
	  || $(PIP_BUILD) --no-cache-dir --force-reinstall --no-deps '$(LLAMA_REQ)'
	@touch $@

## the ONNX export (once, offline, ~20 s; torch is used here and nowhere at run time)
$(ONNX): | $(STAMP)
	$(PY) -m coach.onnx_export

## the grader's mistake model (once, offline, a few minutes of torch on 2 cores; again when its pairs change)
$(MISTAKES): evals/sets/mistake_pairs.jsonl | $(STAMP)
	$(PY) -m evals.mistakes --train --force

## the grader's credit model (once, offline, about half an hour of torch on 2 cores; again when its data change,
## and by hand after edits of the bank: `python -m evals.credit --sentences`, then `--train --force`)
$(CREDIT): evals/sets/mistake_answers.jsonl evals/sets/credit_answers.jsonl evals/sets/credit_sentences.jsonl \
	  | $(STAMP) $(ONNX)
	$(PY) -m evals.credit --train --force

## the grader's naming constants for the two models (once, offline, a few minutes: it grades fresh5-9; again when either
## model is trained again; coach.credit.calibration)
$(CALIBRATION): $(CREDIT) $(MISTAKES) $(wildcard evals/sets/grading_fresh[5-9].jsonl)
	$(PY) -m evals.credit --calibrate

## index: build or refresh the search index from corpus/ (only what changed is re-embedded)
index: $(STAMP) $(ONNX)
	$(PY) -m ingest --quiet

## run: set up, then serve the app on http://127.0.0.1:7860. Answers are composed from the bank without a
## model (COACH_LLM=extractive) unless COACH_LLM says otherwise: on the held-out real questions the
## embedded 135M model lowered key-point coverage and took ~20 s an answer (README, "How answering works").
run: setup
	COACH_LLM=$${COACH_LLM:-extractive} $(PY) app.py serve

## test: set up, then the whole test suite. Not ./data: the tests ingest the bank into a folder of their own
## (tests/conftest.py), so building ./data here was a second whole-bank ingest (about a minute on 2 cores)
test: $(STAMP) $(ONNX) $(MISTAKES) $(CREDIT) $(CALIBRATION) browser
	$(PY) -m pytest

## lint: ruff over the project (rules in ruff.toml); CI runs it before the tests
lint: $(STAMP)
	$(PY) -m ruff check .

## bench: set up, then the benchmarks against the naive baseline -> benchmarks/latest/bench.json
## (BENCH_ARGS=--quick for a short run; the full run takes tens of minutes on 2 cores)
bench: setup
	$(PY) -m evals.bench $(BENCH_ARGS)

## browser: Debian's chromium for the browser tests (Playwright drives /usr/bin/chromium)
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

## clean: remove the index and caches (keeps the virtual environment)
clean:
	rm -rf data .pytest_cache test-artifacts
