#!/usr/bin/env bash
# Installs the Debian 12 packages the build, tests and tools need (run as root or with sudo).
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config clang libcmocka-dev libmicrohttpd-dev libcjson-dev python3 >/dev/null
# the server's integration tests drive it with the official openai npm client
command -v node >/dev/null && command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
