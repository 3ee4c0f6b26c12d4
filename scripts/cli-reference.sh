#!/usr/bin/env bash
# README's reference of every command's options, printed from the binary's own --help, so that the
# README cannot drift from the option tables (tests/test_cli.sh checks it is current).
#   scripts/cli-reference.sh [BIN]            print the block
#   scripts/cli-reference.sh --update [BIN]   rewrite it in README.md, between the markers
set -eu
update=0
[ "${1:-}" = "--update" ] && { update=1; shift; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SP=${1:-$ROOT/build/specprefill}
block() {
  echo "<!-- cli-reference: begin (scripts/cli-reference.sh --update writes this block) -->"
  # every command the binary lists, in its order
  for c in $("$SP" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}'); do
    echo "<details><summary><code>specprefill $c</code></summary>"
    echo
    echo '```'
    "$SP" "$c" --help
    echo '```'
    echo
    echo "</details>"
  done
  echo "<!-- cli-reference: end -->"
}
if [ $update = 0 ]; then block; exit 0; fi
block >"$ROOT/README.md.block"
awk -v blockfile="$ROOT/README.md.block" '
  /<!-- cli-reference: begin/ { while ((getline l < blockfile) > 0) print l; skip = 1; next }
  /<!-- cli-reference: end -->/ { skip = 0; next }
  !skip { print }' "$ROOT/README.md" >"$ROOT/README.md.new"
rm "$ROOT/README.md.block"
mv "$ROOT/README.md.new" "$ROOT/README.md"
