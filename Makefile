# aloro_webhook — PGXS build.  `make && make install`, then see README.md.
EXTENSION  = aloro_webhook
MODULE_big = $(EXTENSION)
OBJS       = $(patsubst %.c,%.o,$(wildcard src/*.c))
PG_CPPFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror
SHLIB_LINK = -lcurl -lssl -lcrypto
# `make installcheck` runs the pg_regress files against the server you run
# (PGHOST, PGPORT), which must preload the extension with the settings of
# test/regress.conf; `make regress` runs them in a throwaway server of their
# own, `make tap` the TAP suite (each test starts its servers), `make test` both.
REGRESS    = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
EXTRA_CLEAN = tmp_check results regression.diffs regression.out log build $(addsuffix .d,$(OBJS))

# --- the install and upgrade scripts, built from sql/ (see sql/README.md) ---
# The version CREATE EXTENSION installs, and the files that define it, in the
# order they run.  Each of them can run again over a database that has its
# objects, so an upgrade runs them all after its migration.
EXT_VERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
SQL_OBJECTS = sql/configuration.sql sql/enqueue.sql sql/queue.sql sql/history.sql \
              sql/operations.sql sql/citus.sql sql/roles.sql
# earlier versions' install scripts as they were released (kept compressed:
# frozen, never edited; see sql/README.md), and the migrations
# (sql/upgrades/FROM--TO.sql) from each version to the next
RELEASED    = $(patsubst sql/released/%.sql.gz,build/%.sql,$(wildcard sql/released/$(EXTENSION)--*.sql.gz))
UPGRADES    = $(patsubst sql/upgrades/%,build/$(EXTENSION)--%,$(wildcard sql/upgrades/*--*.sql))
DATA_built  = build/$(EXTENSION)--$(EXT_VERSION).sql $(UPGRADES) $(RELEASED)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# each object's header dependencies: PGXS tracks none, and an object built
# before a struct in a header changed would keep the old layout
src/%.o.d: src/%.c
	@$(CC) $(CPPFLAGS) -MM -MP -MT "$(@:.d=) $(@:.o.d=.bc)" -MF $@ $<
-include $(addsuffix .d,$(OBJS))

# after the include: Makefile.global resets PROVE_FLAGS
PROVE_FLAGS = -I ./test/t --timer

# the current version: the install guard, then every object
build/$(EXTENSION)--$(EXT_VERSION).sql: sql/install_guard.sql $(SQL_OBJECTS) $(EXTENSION).control
	@mkdir -p build
	{ printf '%s\n' "/* $(notdir $@) -- built by the Makefile from sql/: edit those files, not this one */" \
		'\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  cat sql/install_guard.sql $(SQL_OBJECTS); } > $@

# an upgrade FROM--TO: its migration, with every object of TO where it says
# "-- @objects" -- the files of sql/ when TO is the current version, TO's
# install script as released (less its guard) when it is an earlier one
$(UPGRADES): build/$(EXTENSION)--%.sql: sql/upgrades/%.sql $(SQL_OBJECTS) $(wildcard sql/released/*.sql.gz) $(EXTENSION).control
	@grep -qx -- '-- @objects' $< || { echo "$< has no '-- @objects' line" >&2; exit 1; }
	@to='$*'; to=$${to##*--}; \
	  [ "$$to" = '$(EXT_VERSION)' ] || [ -f sql/released/$(EXTENSION)--$$to.sql.gz ] || \
	  { echo "sql/upgrades/$*.sql leads to $$to, which is neither $(EXT_VERSION) nor released (sql/released/$(EXTENSION)--$$to.sql.gz)" >&2; exit 1; }
	@mkdir -p build
	to='$*'; to=$${to##*--}; \
	{ printf '%s\n' "/* $(notdir $@) -- built by the Makefile from sql/: edit those files, not this one */" \
		"\\echo Use \"ALTER EXTENSION $(EXTENSION) UPDATE TO '$$to'\" to load this file. \\quit"; \
	  sed '/^-- @objects$$/,$$d' $<; \
	  if [ "$$to" = '$(EXT_VERSION)' ]; then cat $(SQL_OBJECTS); else gzip -dc sql/released/$(EXTENSION)--$$to.sql.gz; fi; \
	  sed '1,/^-- @objects$$/d' $<; } > $@

# a released version's script as it was; an install script starts with the
# guard, as every install does
$(RELEASED): build/%.sql: sql/released/%.sql.gz sql/install_guard.sql
	@mkdir -p build
	{ printf '%s\n' "/* $(notdir $@) -- built by the Makefile from sql/released/ */"; \
	  case "$*" in *--*--*) printf '%s\n' '\echo Use "ALTER EXTENSION $(EXTENSION) UPDATE" to load this file. \quit';; \
	    *) printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; cat sql/install_guard.sql;; esac; \
	  gzip -dc $<; } > $@

.PHONY: regress tap test
regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) --temp-instance=./tmp_check --temp-config=./test/regress.conf $(REGRESS)
tap:
	$(prove_installcheck)
test: regress tap

# the PGXN distribution (META.json): the committed tree as a zip named for
# the version
.PHONY: dist
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXT_VERSION)/ -o $(EXTENSION)-$(EXT_VERSION).zip HEAD
