# One command sets up and runs the main job (make demo); one sets up and runs the tests (make test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared
# The CPU vLLM server for the `vllm` tests lives in its own venv, cached outside the checkout
# so fresh clones on one machine share it (scripts/setup-vllm-venv.sh; docs/vllm.md).
export VLLM_VENV ?= $(HOME)/.cache/icdcoder/venv-vllm
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install index demo test lint typecheck unit eval memory pack learn eval-learn bench clean vllm-setup deploy-check default-pack

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0   # CPU build first: nothing after it pulls CUDA wheels
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

index: install
	$(BIN)/icdcoder index build

demo: index
	$(BIN)/icdcoder code --format table examples/*.txt

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

vllm-setup:
	bash scripts/setup-vllm-venv.sh

# Image and deployment files, offline: scripts/validate-deploy.sh (deploy/README.md).
deploy-check: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/validate-deploy.sh

test: lint typecheck deploy-check index vllm-setup
	$(BIN)/pytest -q -rs

INDEX_CSV ?= $(SHARED)/data/icd10cm-index/ICD10CM_2025_Index.csv
# The example memory learnt from CodiEsp train (docs/memory.md); never from dev.
MEMORY ?= $(HOME)/.cache/icdcoder/memory-codiesp-train.jsonl
# The pack that holds it with the Alphabetic Index: what `make eval` scores.
PACK ?= $(HOME)/.cache/icdcoder/packs/codiesp-train

$(MEMORY): icdcoder/memory_codiesp.py | install
	$(BIN)/icdcoder memory codiesp --data $(SHARED)/data/codiesp --split train --out $@

memory: $(MEMORY)

$(PACK)/manifest.json: $(MEMORY) | install
	rm -rf $(PACK)
	$(BIN)/icdcoder pack build --out $(PACK) --name codiesp-train \
		--description "The built-in pack (with its Alphabetic Index) and the CodiEsp train example memory" \
		--memory $(MEMORY)

pack: $(PACK)/manifest.json

eval: install $(PACK)/manifest.json
	$(BIN)/icdcoder eval --data $(SHARED)/data/codiesp --split dev --pack $(PACK)

# The built-in pack's Alphabetic Index texts (icdcoder/packs/default/enrichment.tsv.gz), derived
# from the CMS files: the FY2025 index (flattened CSV; its FY2026 XML is not in ../shared) and the
# FY2026 neoplasm table (CMS XML). Codes checked against the installed tabular list.
NEOPLASM_XML ?= $(SHARED)/data/icd10cm-index/icd10cm-neoplasm-April-1-2026-XML.xml
DEFAULT_PACK_TMP := $(HOME)/.cache/icdcoder/packs/.default-pack
default-pack: install
	rm -rf $(DEFAULT_PACK_TMP)
	$(BIN)/icdcoder pack build --out $(DEFAULT_PACK_TMP) --name builtin \
		--description "ICD-10-CM FY2026 descriptions and inclusion terms, Alphabetic Index term paths; all-MiniLM-L6-v2; verifier weights fitted on CodiEsp train (English)" \
		--index $(INDEX_CSV) --index $(NEOPLASM_XML)
	cp $(DEFAULT_PACK_TMP)/enrichment.tsv.gz $(DEFAULT_PACK_TMP)/manifest.json icdcoder/packs/default/
	rm -rf $(DEFAULT_PACK_TMP)

# A pack learnt from CodiEsp train's texts and document-level codes only (trainD.tsv, no
# evidence spans): `icdcoder learn` (docs/memory.md, "Learning from a coded archive").
LEARN_PACK ?= $(HOME)/.cache/icdcoder/packs/learn-codiesp-train

$(LEARN_PACK)/manifest.json: | install
	rm -rf $(LEARN_PACK)
	$(BIN)/icdcoder learn --name learn-codiesp-train \
		--notes $(SHARED)/data/codiesp/train/text_files_en \
		--codes $(SHARED)/data/codiesp/train/trainD.tsv \
		--out $(LEARN_PACK) \
		--description "learnt from CodiEsp train texts and trainD.tsv (no evidence spans)"

learn: $(LEARN_PACK)/manifest.json

eval-learn: install $(LEARN_PACK)/manifest.json
	$(BIN)/icdcoder eval --data $(SHARED)/data/codiesp --split dev --pack $(LEARN_PACK)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
