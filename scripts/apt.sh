# Sourced by the scripts that install Debian packages (common.sh,
# install-deps.sh, citus.sh, package.sh, the benchmark).

# aw_need_packages [--quiet LOG] PKG...: installs those of PKG that are not
# installed (apt-get update first), saying which; nothing when all are.  With
# --quiet, apt-get's output goes to LOG and is shown only when it fails.
aw_need_packages() {
  local log=""
  if [ "${1:-}" = --quiet ]; then log=$2; shift 2; fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ -n "$log" ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$log" 2>&1 \
      || { tail -n 40 "$log"; return 1; }
  else
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
