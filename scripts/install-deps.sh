#!/usr/bin/env bash
# Installs the Debian packages that building and testing aloro_webhook need,
# only when something is missing.  Runs as root on Debian bookworm.
set -euo pipefail

pkgs=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
      libipc-run-perl nodejs make gcc nginx-light prometheus-postgres-exporter curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm comes with some Node.js builds; Debian's nodejs needs its npm package
command -v npm >/dev/null 2>&1 || missing+=(npm)
# libFuzzer comes with clang (scripts/fuzz.sh)
command -v clang >/dev/null 2>&1 || command -v clang-14 >/dev/null 2>&1 || missing+=(clang)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# the test receiver that verifies Standard Webhooks with the published package
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/test/receiver/node_modules/standardwebhooks" ]; then
  echo "== installing the test receivers' npm packages"
  npm ci --prefix "$here/test/receiver" --no-audit --no-fund --loglevel=error
fi
