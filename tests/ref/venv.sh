#!/usr/bin/env bash
# Makes (once) a Python virtual environment at DIR with the pinned test references and clients
# of tests/ref/requirements.txt, and prints its python. Safe to call from tests running side by
# side (one installs, the others wait). Nothing is installed outside DIR.
# Usage: tests/ref/venv.sh DIR
set -euo pipefail
DIR=$1
REQ="$(cd "$(dirname "$0")" && pwd)/requirements.txt"
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
want=$(sha256sum "$REQ" | cut -c1-16)
if [ "$(cat "$DIR/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$DIR"
  python3 -m venv "$DIR" >&2
  if ! "$DIR/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2; then
    echo "error: could not install the test references from PyPI (tests/ref/requirements.txt): is the registry reachable?" >&2
    rm -rf "$DIR"
    exit 1
  fi
  echo "$want" >"$DIR/.requirements"
fi
echo "$DIR/bin/python"
