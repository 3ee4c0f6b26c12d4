#!/usr/bin/env bash
# Replicas behind nginx (deploy/nginx.conf) on loopback, with faults: tests/deploy/test_deploy.py.
# Usage: test_deploy.sh SPECPREFILL_BINARY WORK_DIR
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "skipped: nginx is not installed (scripts/install-deps.sh installs nginx-light)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
export PATH=$PATH:/usr/sbin
rm -rf "$2" && mkdir -p "$2"
python3 "$HERE/deploy/test_deploy.py" "$1" "$(cd "$HERE/.." && pwd)" "$2"
