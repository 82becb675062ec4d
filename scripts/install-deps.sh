#!/usr/bin/env bash
# Installs the Debian packages that building and testing aloro_webhook need,
# only when something is missing.  Runs as root on Debian bookworm.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

pkgs=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
      libipc-run-perl nodejs make gcc nginx-light prometheus-postgres-exporter curl)
# npm comes with some Node.js builds; Debian's nodejs needs its npm package
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
# libFuzzer comes with clang (scripts/fuzz.sh)
command -v clang >/dev/null 2>&1 || command -v clang-14 >/dev/null 2>&1 || pkgs+=(clang)
aw_need_packages "${pkgs[@]}"

# the test receiver that verifies Standard Webhooks with the published package
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/test/receiver/node_modules/standardwebhooks" ]; then
  echo "== installing the test receivers' npm packages"
  npm ci --prefix "$here/test/receiver" --no-audit --no-fund --loglevel=error
fi
