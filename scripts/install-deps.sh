#!/usr/bin/env bash
# Installs the Debian 12 packages the build, tests and tools need (run as root or with sudo).
# PyPI packages (the test references, the openai client) are installed by the test scripts
# themselves into a virtual environment under the build folder, never globally.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config clang libcmocka-dev libmicrohttpd-dev libcjson-dev \
  curl unzip ca-certificates python3 python3-venv nginx-light >/dev/null
# real English prose for the RULER-style haystacks (eval/ruler.py): Debian's own documentation
$SUDO apt-get install -y -qq --no-install-recommends debian-policy debian-faq gnu-standards >/dev/null
