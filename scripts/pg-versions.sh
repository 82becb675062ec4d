#!/usr/bin/env bash
# PostgreSQL majors other than bookworm's 15, built from Debian's own source
# packages into a cache outside the tree, so that the extension can be built
# and tested against every supported major.
#
#   bash scripts/pg-versions.sh build MAJOR      build MAJOR (skipped when the
#                                                cache already has that exact
#                                                Debian version)
#   bash scripts/pg-versions.sh pg_config MAJOR  print MAJOR's pg_config path
#   bash scripts/pg-versions.sh list             majors in the cache, with versions
#   bash scripts/pg-versions.sh regress-tree MAJOR  the core regression suite's
#                                                source tree (for 15, the
#                                                installed package's version)
#
# Layout (ALORO_PG_CACHE, default /var/cache/aloro_webhook/pg):
#   MAJOR/            the prefix install (bin, lib, lib/postgresql/pgxs with the TAP
#                     Perl modules and pg_regress, include, share)
#   MAJOR/.debian-version   the Debian source version that prefix was built from
#   src/MAJOR/        the configured and built core source tree, kept for
#                     PostgreSQL's own `make installcheck`
#   download/MAJOR/   the .dsc, orig and debian tarballs
#   log/MAJOR.log     the last build's output, log/MAJOR.minutes its duration
#
# Only deb-src lines are added (/etc/apt/sources.list.d/aloro-pg-src.list):
# no binary package of another suite is installed, nothing is pinned.
# Runs as root (apt-get); the build itself runs under `nice -n 10` with -j2 at
# most, since the machine's two cores are shared.
set -euo pipefail

CACHE=${ALORO_PG_CACHE:-/var/cache/aloro_webhook/pg}
JOBS=${PG_BUILD_JOBS:-2}
SYSTEM_MAJOR=15           # bookworm's binary package (scripts/install-deps.sh)
SRC_LIST=/etc/apt/sources.list.d/aloro-pg-src.list

die() { echo "pg-versions: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" | sed -n '5,10p' >&2
  exit 2
}

check_major() {
  [[ ${1:-} =~ ^[0-9]+$ ]] || die "MAJOR must be a number like 17, not '${1:-}'"
}

# Debian's suites that carry postgresql-MAJOR sources. Which suite has which
# major moves over time, so all of them are listed; apt picks what it finds.
write_src_list() {
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  local m=http://deb.debian.org/debian s=http://deb.debian.org/debian-security
  # the host apt already uses for bookworm, when its sources name one
  local host
  host=$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/debian.sources \
           /etc/apt/sources.list 2>/dev/null | head -1 || true)
  [ -n "$host" ] && m=${host%/}
  echo "== writing $SRC_LIST (deb-src only)"
  cat > "$SRC_LIST" <<EOF
# aloro_webhook (scripts/pg-versions.sh): Debian SOURCE packages only, for
# building PostgreSQL majors other than bookworm's from Debian's own sources.
# No deb (binary) lines and no pinning: nothing here changes what bookworm installs.
deb-src [signed-by=$key] $m bookworm main
deb-src [signed-by=$key] $s bookworm-security main
deb-src [signed-by=$key] $m bookworm-updates main
deb-src [signed-by=$key] $m bookworm-backports main
deb-src [signed-by=$key] $m trixie main
deb-src [signed-by=$key] $s trixie-security main
deb-src [signed-by=$key] $m trixie-backports main
deb-src [signed-by=$key] $m sid main
deb-src [signed-by=$key] $m experimental main
EOF
  apt-get update -qq
}

# Debian versions of postgresql-MAJOR's source that apt knows, newest first
src_versions() {
  apt-cache showsrc "postgresql-$1" 2>/dev/null \
    | awk -v p="postgresql-$1" '/^Package: /{ok=($2==p)} ok&&/^Version: /{print $2}' \
    | sort -u | sort -r -V
}

need_build_deps() {
  # what Debian's source and a plain configure with the options below need;
  # libcurl is the extension's own (scripts/install-deps.sh), not PostgreSQL's
  local pkgs=(dpkg-dev xz-utils bzip2 gcc make perl bison flex pkg-config
              libreadline-dev zlib1g-dev libssl-dev libicu-dev liblz4-dev
              libzstd-dev libipc-run-perl)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing build dependencies: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

cmd_pg_config() {
  local major=$1
  if [ "$major" = "$SYSTEM_MAJOR" ]; then
    echo "/usr/lib/postgresql/$major/bin/pg_config"; return
  fi
  [ -x "$CACHE/$major/bin/pg_config" ] \
    || die "PostgreSQL $major is not built: bash $0 build $major"
  echo "$CACHE/$major/bin/pg_config"
}

cmd_list() {
  echo "$SYSTEM_MAJOR $(/usr/lib/postgresql/$SYSTEM_MAJOR/bin/pg_config --version 2>/dev/null || echo 'not installed') (system)"
  local d
  for d in "$CACHE"/[0-9]*; do
    [ -x "$d/bin/pg_config" ] || continue
    echo "$(basename "$d") $("$d/bin/pg_config" --version) (Debian source $(cat "$d/.debian-version" 2>/dev/null || echo '?'), built in $(cat "$CACHE/log/$(basename "$d").minutes" 2>/dev/null || echo '?') min)"
  done
}

# the build itself, its output going to the log; runs under set -e
build_steps() {
  local major=$1 got=$2 dl=$3 src=$4 prefix=$5 d
  set -x
  rm -rf "$src" "$prefix"
  mkdir -p "$CACHE/src"
  dpkg-source -x "$dl/postgresql-${major}_${got#*:}.dsc" "$src"
  cd "$src"
  # Debian's patches stay applied, but one: 50-per-version-dirs hard-codes
  # pkglibdir (modules, lib/pgxs) as /usr/lib/postgresql/MAJOR/lib, which
  # would install outside the prefix, beside the system's packages
  if [ -f debian/patches/50-per-version-dirs.patch ]; then
    patch -R -p1 < debian/patches/50-per-version-dirs.patch
  fi
  # a plain upstream-style build with what the extension and its TAP
  # suite need
  nice -n 10 ./configure --prefix="$prefix" --with-openssl --enable-tap-tests \
    --with-icu --with-lz4 --with-zstd --with-readline
  # nothing may be installed outside the prefix
  # shellcheck disable=SC2016  # make expands these, not the shell
  for d in $(printf 'top_builddir = .\ninclude src/Makefile.global\nshow:\n\t@echo $(bindir) $(pkglibdir) $(pgxsdir) $(includedir_server) $(datadir)\n' \
               | make -s -f - show); do
    case "$d" in "$prefix"/*) ;; *) echo "installation directory $d is outside $prefix"; exit 1 ;; esac
  done
  nice -n 10 make -s -j"$JOBS"
  nice -n 10 make -s install      # with --enable-tap-tests, src/test/perl goes into pgxs too
  set +x
}

cmd_build() {
  local major=$1
  if [ "$major" = "$SYSTEM_MAJOR" ]; then
    echo "== PostgreSQL $major is bookworm's package (scripts/install-deps.sh); nothing to build"
    return
  fi
  local prefix=$CACHE/$major src=$CACHE/src/$major dl=$CACHE/download/$major
  local have=""
  [ -x "$prefix/bin/pg_config" ] && have=$(cat "$prefix/.debian-version" 2>/dev/null || true)

  [ "$(id -u)" = 0 ] || die "run as root (apt-get source, build dependencies)"
  [ -f "$SRC_LIST" ] || write_src_list
  local versions
  versions=$(src_versions "$major")
  if [ -z "$versions" ]; then
    apt-get update -qq || true
    versions=$(src_versions "$major")
  fi
  if [ -n "$have" ] && { [ -z "$versions" ] || grep -qxF "$have" <<<"$versions"; }; then
    echo "== PostgreSQL $major: cache has Debian $have ($("$prefix/bin/pg_config" --version)); skipping"
    return
  fi
  [ -n "$versions" ] || die "no Debian source package postgresql-$major in any suite of $SRC_LIST"

  # the newest version whose files the mirror actually serves
  mkdir -p "$dl" "$CACHE/log"
  local v got=""
  for v in $versions; do
    if [ -n "$have" ] && [ "$v" = "$have" ]; then got=$v; break; fi
    if [ -f "$dl/postgresql-${major}_${v#*:}.dsc" ] \
       || (cd "$dl" && apt-get source -qq --download-only "postgresql-$major=$v" >/dev/null 2>&1); then
      got=$v; break
    fi
    echo "== postgresql-$major $v is listed but its files cannot be downloaded"
  done
  [ -n "$got" ] || die "no version of postgresql-$major could be downloaded (listed: ${versions//$'\n'/ })"
  if [ "$got" = "$have" ]; then
    echo "== PostgreSQL $major: cache has Debian $have, the newest that can be downloaded; skipping"
    return
  fi

  need_build_deps
  local log=$CACHE/log/$major.log t0
  t0=$(date +%s)
  echo "== building PostgreSQL $major from Debian source $got (log: $log)"
  local rc=0
  set +e
  ( set -e; build_steps "$major" "$got" "$dl" "$src" "$prefix" ) >"$log" 2>&1
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    tail -30 "$log" >&2
    die "build of PostgreSQL $major failed; see $log"
  fi
  local pgxs
  pgxs=$("$prefix/bin/pg_config" --pgxs)
  pgxs=${pgxs%/src/makefiles/pgxs.mk}
  [ -f "$pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] || die "TAP Perl modules were not installed into $pgxs"
  [ -x "$pgxs/src/test/regress/pg_regress" ] || die "pg_regress was not installed into $pgxs"
  echo "$got" > "$prefix/.debian-version"
  local mins
  mins=$(awk -v s=$(( $(date +%s) - t0 )) 'BEGIN{printf "%.1f", s/60}')
  echo "$mins" > "$CACHE/log/$major.minutes"
  echo "== PostgreSQL $major ($("$prefix/bin/pg_config" --version), Debian $got) built in $mins min: $prefix"
}

# The core regression suite's tree for bookworm's own 15, whose server is the
# system package: Debian's source of exactly the installed version,
# configured like the others, with only what `make installcheck` of
# src/test/regress needs built (pg_regress, regress.so and the spi modules).
# The other majors' trees come with their builds.
cmd_regress_tree() {
  local major=$1 src=$CACHE/src/$1 dl=$CACHE/download/$1
  if [ "$major" != "$SYSTEM_MAJOR" ]; then
    [ -f "$src/src/test/regress/regress.so" ] || cmd_build "$major"
    return
  fi
  local want
  want=$(dpkg-query -W -f='${Version}' "postgresql-$major" 2>/dev/null) \
    || die "postgresql-$major is not installed (scripts/install-deps.sh)"
  if [ -f "$src/.debian-version" ] && [ "$(cat "$src/.debian-version")" = "$want" ] \
     && [ -f "$src/src/test/regress/regress.so" ]; then
    echo "== PostgreSQL $major: the regression suite of Debian $want is in the cache"
    return
  fi
  [ "$(id -u)" = 0 ] || die "run as root (apt-get source, build dependencies)"
  grep -q ' bookworm-security ' "$SRC_LIST" 2>/dev/null || write_src_list
  src_versions "$major" | grep -qxF "$want" || apt-get update -qq
  # the installed version's source, or else the newest of that major the
  # mirror serves (a security update's source may not be mirrored: the suite
  # of the same major then runs against the newer minor release)
  mkdir -p "$dl" "$CACHE/log"
  local v got=""
  for v in $want $(src_versions "$major"); do
    if [ -f "$dl/postgresql-${major}_${v#*:}.dsc" ] \
       || (cd "$dl" && apt-get source -qq --download-only "postgresql-$major=$v" >/dev/null 2>&1); then
      got=$v; break
    fi
    echo "== postgresql-$major $v: its source cannot be downloaded"
  done
  [ -n "$got" ] || die "no source of postgresql-$major can be downloaded"
  if [ -f "$src/.debian-version" ] && [ "$(cat "$src/.debian-version")" = "$got" ] \
     && [ -f "$src/src/test/regress/regress.so" ]; then
    echo "== PostgreSQL $major: the regression suite of Debian $got is in the cache"
    return
  fi
  want=$got
  need_build_deps
  local log=$CACHE/log/$major-regress.log
  echo "== building the regression suite of PostgreSQL $major (Debian $want; log: $log)"
  if ! ( set -ex
         rm -rf "$src"; mkdir -p "$CACHE/src"
         dpkg-source -x "$dl/postgresql-${major}_${want#*:}.dsc" "$src"
         cd "$src"
         nice -n 10 ./configure --prefix="$CACHE/$major-unused" --with-openssl \
           --with-icu --with-lz4 --with-zstd --with-readline
         nice -n 10 make -s -j"$JOBS" -C src/backend generated-headers
         nice -n 10 make -s -j"$JOBS" -C src/test/regress all ) > "$log" 2>&1; then
    tail -30 "$log" >&2
    die "the regression suite of PostgreSQL $major did not build; see $log"
  fi
  echo "$want" > "$src/.debian-version"
}

case "${1:-}" in
  build)     check_major "${2:-}"; cmd_build "$2" ;;
  pg_config) check_major "${2:-}"; cmd_pg_config "$2" ;;
  list)      cmd_list ;;
  regress-tree) check_major "${2:-}"; cmd_regress_tree "$2" ;;
  *)         usage ;;
esac
