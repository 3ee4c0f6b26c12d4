#!/usr/bin/env bash
# RULER-style accuracy of one model at several lengths: writes the task files (eval/ruler.py, the
# prose haystack from Debian's documentation, installed here when missing) and runs `specprefill
# eval` on each, chat-formatted, scored as RULER scores (--score contains).
#   eval/ruler.sh MODEL.gguf OUT_DIR [LENGTHS] [N] [-- extra eval options]
# LENGTHS default 1024,2048,4096,8192; N prompts per length (default 100), the needle tasks in turn
# (RULER_TASKS=all for every task). Writes OUT_DIR/ruler-LEN.{jsonl,md,json,-accuracy.svg}.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SP=${SPECPREFILL:-$ROOT/build/specprefill}
MODEL=$1 OUT=$2 LENGTHS=${3:-1024,2048,4096,8192} N=${4:-100}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
if [ ! -f /usr/share/doc/debian-policy/policy.txt.gz ] || [ ! -f /usr/share/info/standards.info.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends debian-policy debian-faq gnu-standards >/dev/null
fi
mkdir -p "$OUT"
for L in ${LENGTHS//,/ }; do
  python3 "$ROOT/eval/ruler.py" --model "$MODEL" --specprefill "$SP" --tokens "$L" --n "$N" --seed "$L" \
    --tasks "${RULER_TASKS:-needles}" --haystack prose >"$OUT/ruler-$L.jsonl"
  "$SP" eval -m "$MODEL" --task "$OUT/ruler-$L.jsonl" --chat --score contains -o "$OUT/ruler-$L" "$@" | tee "$OUT/ruler-$L.md"
done
