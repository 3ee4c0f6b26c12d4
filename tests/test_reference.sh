#!/usr/bin/env bash
# The engine against independent references from PyPI, installed into a venv under the build
# folder (tests/ref/venv.sh): the float64 NumPy forward pass (forward), Hugging Face's
# tokenizers (tokenizer), gguf-py reading a model back through safetensors and `convert` (convert),
# or jinja2 rendering chat templates as transformers does (templates). The real model comes from scripts/get-models.sh (scripts/test.sh
# runs it); without it its cases report skipped.
# Usage: test_reference.sh forward|tokenizer|convert|templates SPECPREFILL VENV_DIR WORK_DIR
set -euo pipefail
WHAT=$1 SP=$2 VENV=$3 WORK=$4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REAL=${SP_REAL_MODEL:-$ROOT/models-big/SmolLM2-135M-Instruct.Q4_1.gguf}
SHARED=$(cd "$ROOT/.." && pwd)/shared
PY=$("$ROOT/tests/ref/venv.sh" "$VENV")
case $WHAT in
  forward) exec "$PY" "$ROOT/tests/ref/check_forward.py" "$SP" "$WORK" --real "$REAL" ${SP_REFERENCE_QUICK:+--quick} ;;
  tokenizer)
    T=$SHARED/fixtures/tokenizer
    exec "$PY" "$ROOT/tests/ref/check_tokenizer.py" "$SP" --shared "$SHARED" "$REAL" "$ROOT/models/main.gguf" \
      "$T/vocab-llama3.gguf" "$T/vocab-qwen2.gguf" "$T/vocab-llama-spm.gguf" ;;
  convert) exec "$PY" "$ROOT/tests/ref/check_convert.py" "$SP" "$WORK/convert" ;;
  templates) exec "$PY" "$ROOT/tests/ref/check_templates.py" "$SP" --shared "$SHARED" ;;
  *) echo "usage: $0 forward|tokenizer|convert|templates SPECPREFILL VENV_DIR WORK_DIR" >&2; exit 2 ;;
esac
