# aloro_webhook — PGXS build.  `make && make install`, then see README.md.
EXTENSION  = aloro_webhook
MODULE_big = $(EXTENSION)
OBJS       = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA       = $(wildcard sql/$(EXTENSION)--*.sql)
PG_CPPFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror
SHLIB_LINK = -lcurl -lssl -lcrypto
REGRESS    = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --temp-instance=./tmp_check --temp-config=./test/regress.conf
TAP_TESTS  = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
EXTRA_CLEAN = tmp_check results regression.diffs regression.out log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after the include: Makefile.global resets PROVE_FLAGS
PROVE_FLAGS = -I ./test/t --timer

# `make installcheck` runs both pg_regress (above) and the TAP suite; these
# run one of them alone.
.PHONY: regress tap
regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
tap:
	$(prove_installcheck)
