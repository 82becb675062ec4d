#!/usr/bin/env bash
# Installs the Debian packages that building and testing aloro_webhook need,
# only when something is missing.  Runs as root on Debian bookworm.
set -euo pipefail

pkgs=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
      libipc-run-perl nodejs make gcc)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
