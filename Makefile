# ngx_http_ws_proxy_module: build, test, benchmark.
#
# The module is built as a --with-compat dynamic module against an nginx
# source tree (NGX_SRC), configured with the configure arguments of the nginx
# that will load it, so the .so loads into that nginx.  By default: the tree
# Debian's nginx-dev package installs and its conf_flags (Debian's binary).
#
#   make NGX_SRC=/src/nginx-1.31.3                  nginx -V of NGX_BIN, if any
#   make NGX_SRC=/src/nginx-1.31.3 NGX_BIN=/opt/nginx/sbin/nginx
#   make NGX_SRC=/src/nginx-1.31.3 NGX_CONF_ARGS="--with-compat ..."
#
# NGX_CONF_ARGS wins; else the tree's conf_flags (Debian's nginx-dev); else
# the "configure arguments" of `$(NGX_BIN) -V` (their --add-module and
# --add-dynamic-module paths left out: those are the builder's); else only
# --with-compat.  The tree is configured in a copy, $(NGX_BUILD), and
# configured again when NGX_SRC or the arguments change.
#
# The test matrix (util/matrix, `make test TARGET=...`) builds its own nginx
# trees under $(BUILD)/<name>-<version>/: docs/testing.md.

NGX_SRC      ?= /usr/share/nginx/src
NGX_BIN      ?= /usr/sbin/nginx
# overridable, so that a build in another root (Debian 13's, util/debian13)
# does not overwrite this one's
BUILD        ?= $(CURDIR)/build
NGX_BUILD    := $(BUILD)/nginx
TARGET       ?=
MODULE       := $(BUILD)/ngx_http_ws_proxy_module.so
SRCS         := $(wildcard src/*.h src/*/*.c src/*/*.h) config

CC           ?= cc
# the nginx-free layers (docs/design.md, "Layers"): their folders only, so
# that nothing built without nginx can include the module's headers
WSP_FREE     := protocol session
CFLAGS_UNIT  := -O2 -g -Wall -Wextra -Werror -std=c99 \
	$(addprefix -Isrc/,$(WSP_FREE))

# the names that differ between Debian 12 (bookworm) and 13 (trixie, the
# root of util/debian13): LuaJIT's headers and clang's libFuzzer
DEB_CODENAME := $(shell sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
ifeq ($(DEB_CODENAME),bookworm)
DEB_PKGS_RELEASE := libluajit2-5.1-dev libclang-rt-14-dev
else
DEB_PKGS_RELEASE := libluajit-5.1-dev libclang-rt-19-dev
endif

DEB_PKGS := nginx nginx-dev libnginx-mod-http-lua libnginx-mod-http-ndk \
	lua-resty-core libssl-dev libpcre2-dev zlib1g-dev \
	openssl gcc make perl libtest-base-perl libtest-longstring-perl \
	liblist-moreutils-perl libtext-diff-perl liburi-perl libipc-run-perl \
	lua-nginx-websocket python3 python3-websockets valgrind curl \
	procps iproute2 clang prometheus $(DEB_PKGS_RELEASE)

SHELL := /bin/bash

.PHONY: FORCE all deps e2e-deps deb-deps deb unit soak test test-unit test-nginx \
	test-valgrind test-debug bench bench-deflate bench-scale fuzz demo clean \
	debian13-root test-debian13 deb-debian13

all: $(MODULE)

deps:
	@if [ "$$(id -u)" = 0 ]; then \
	    if ! dpkg -s $(DEB_PKGS) >/dev/null 2>&1; then \
	        apt-get update -qq && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends $(DEB_PKGS); \
	    fi; \
	else \
	    dpkg -s $(DEB_PKGS) >/dev/null 2>&1 || \
	    { echo "missing packages; run 'make deps' as root"; exit 1; }; \
	fi

# the browser test: Debian's Chromium and Node.js, playwright-core from npm
e2e-deps: deps
	@if [ "$$(id -u)" = 0 ]; then \
	    command -v node >/dev/null && command -v npm >/dev/null || \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends nodejs npm; \
	    [ -x /usr/bin/chromium ] || \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends chromium; \
	fi
	@[ -d t/e2e/node_modules/playwright-core ] || \
	    (cd t/e2e && npm ci --no-audit --no-fund)

# the Debian package: built by dpkg-buildpackage from debian/ with debhelper
# and dh_nginx (nginx-dev), as Debian's own module packages are, in a copy
# of the tree under build/deb/ so that build/nginx and the module the tests
# load stay untouched.  The .deb lands in build/deb/.
DEB_BUILD_PKGS := build-essential dpkg-dev debhelper lintian
DEB_VERSION   = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
DEB_ARCH      = $(shell dpkg --print-architecture)
DEB_NAME      := libnginx-mod-http-ws-proxy
DEB_FILE      = $(BUILD)/deb/$(DEB_NAME)_$(DEB_VERSION)_$(DEB_ARCH).deb

deb-deps: deps
	@if [ "$$(id -u)" = 0 ]; then \
	    dpkg -s $(DEB_BUILD_PKGS) >/dev/null 2>&1 || \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends $(DEB_BUILD_PKGS); \
	else \
	    dpkg -s $(DEB_BUILD_PKGS) >/dev/null 2>&1 || \
	    { echo "missing packages; run 'make deb-deps' as root"; exit 1; }; \
	fi

deb: deb-deps
	@grep -q '_VERSION = "$(DEB_VERSION)"' lib/resty/websocket/proxy.lua || \
	    { echo "debian/changelog says $(DEB_VERSION), proxy.lua's" \
	        "_VERSION differs: add a changelog entry"; exit 1; }
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/src
	tar -c --exclude=./build --exclude=./.git --exclude=node_modules \
	    --exclude='./t/servroot*' --exclude='./fuzz/corpus-*' . \
	    | tar -x -C $(BUILD)/deb/src
	cd $(BUILD)/deb/src && dpkg-buildpackage -b -us -uc \
	    >$(BUILD)/deb/build.log 2>&1 \
	    || { tail -30 $(BUILD)/deb/build.log; exit 1; }
	@echo "lintian:"; lintian --fail-on error $(DEB_FILE) || exit 1
	@echo "$(DEB_FILE)"

# the configure arguments, one per line, in the file that says whether they
# (or NGX_SRC) changed since the tree was configured
NGX_CONF_STAMP := $(NGX_BUILD).args
# the default NGX_BIN (Debian's) only goes with the default tree: another
# NGX_SRC without NGX_BIN gets --with-compat alone, not Debian's arguments
NGX_CONF_BIN := $(if $(and $(filter file,$(origin NGX_BIN)),\
	$(filter-out file,$(origin NGX_SRC))),,$(NGX_BIN))

$(NGX_CONF_STAMP): FORCE
	@mkdir -p $(BUILD)
	@NGX_SRC='$(NGX_SRC)' NGX_BIN='$(NGX_CONF_BIN)' \
	    NGX_CONF_ARGS_SET='$(if $(filter undefined,$(origin NGX_CONF_ARGS)),,1)' \
	    NGX_CONF_ARGS='$(NGX_CONF_ARGS)' \
	    util/ngx-conf-args >$@.new || { rm -f $@.new; exit 1; }
	@if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

$(NGX_BUILD)/objs/Makefile: config $(NGX_CONF_STAMP)
	@test -x $(NGX_SRC)/configure -o -x $(NGX_SRC)/auto/configure || \
	    { echo "NGX_SRC=$(NGX_SRC) is not an nginx source tree"; exit 1; }
	rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && { [ -x ./configure ] && c=./configure || \
	        c=auto/configure; } && \
	    mapfile -t a < <(grep -v "^#" $(NGX_CONF_STAMP)) && \
	    "$$c" "$${a[@]}" \
	        --with-cc-opt="-g -O2 -fPIC -Wall -Werror" \
	        --with-ld-opt="-fPIC" \
	        --add-dynamic-module=$(CURDIR) >$(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new inode: a running nginx keeps its mapping of the old file
	cp $(NGX_BUILD)/objs/ngx_http_ws_proxy_module.so $@.tmp && mv -f $@.tmp $@

# unit tests of the codec, without nginx
$(BUILD)/wsp_frame_test: src/protocol/ngx_wsp_frame.c \
		src/protocol/ngx_wsp_frame.h t/unit/tap.h t/unit/wsp_frame_test.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_UNIT) -o $@ src/protocol/ngx_wsp_frame.c \
	    t/unit/wsp_frame_test.c

# unit tests of the handshake parser and checks, without nginx
$(BUILD)/wsp_handshake_test: src/protocol/ngx_wsp_handshake.c \
		src/protocol/ngx_wsp_handshake.h t/unit/tap.h \
		t/unit/wsp_handshake_test.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_UNIT) -o $@ src/protocol/ngx_wsp_handshake.c \
	    t/unit/wsp_handshake_test.c

# unit tests of permessage-deflate's negotiation and codec, without nginx
$(BUILD)/wsp_deflate_test: src/protocol/ngx_wsp_deflate.c \
		src/protocol/ngx_wsp_deflate.h \
		src/protocol/ngx_wsp_handshake.c src/protocol/ngx_wsp_handshake.h \
		t/unit/tap.h t/unit/wsp_deflate_test.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_UNIT) -o $@ src/protocol/ngx_wsp_deflate.c \
	    src/protocol/ngx_wsp_handshake.c t/unit/wsp_deflate_test.c -lz

# the nginx-free layers' objects, one per source of src/protocol and
# src/session, under build/free/<layer>/: each must reference no nginx
# symbol (only their own ngx_wsp_*(), zlib and the C library); t/000 checks
# the module's objects of the same folders too
WSP_FREE_OBJS := $(patsubst src/%.c,$(BUILD)/free/%.o,\
	$(wildcard $(WSP_FREE:%=src/%/*.c)))

$(BUILD)/free/%.o: src/%.c $(wildcard $(WSP_FREE:%=src/%/*.h))
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_UNIT) -c -o $@ $<
	@! nm -u $@ | grep -v ' ngx_wsp_' | grep -E ' _?ngx_' \
	    || { echo "$@ references nginx"; exit 1; }

# unit tests of the session core, without nginx
$(BUILD)/wsp_session_test: $(BUILD)/free/session/ngx_wsp_session.o \
		$(BUILD)/free/session/ngx_wsp_live.o \
		$(BUILD)/free/session/ngx_wsp_pmd.o \
		src/protocol/ngx_wsp_frame.c src/protocol/ngx_wsp_frame.h \
		src/session/ngx_wsp_session.h t/unit/tap.h \
		t/unit/wsp_session.h t/unit/wsp_wire.h t/unit/wsp_session_test.c
	$(CC) $(CFLAGS_UNIT) -o $@ $(BUILD)/free/session/ngx_wsp_session.o \
	    $(BUILD)/free/session/ngx_wsp_live.o \
	    $(BUILD)/free/session/ngx_wsp_pmd.o \
	    src/protocol/ngx_wsp_frame.c t/unit/wsp_session_test.c

UNIT := $(if $(wildcard t/unit/wsp_frame_test.c),$(BUILD)/wsp_frame_test) \
	$(if $(wildcard t/unit/wsp_session_test.c),$(BUILD)/wsp_session_test) \
	$(if $(wildcard t/unit/wsp_handshake_test.c),$(BUILD)/wsp_handshake_test) \
	$(if $(wildcard t/unit/wsp_deflate_test.c),$(BUILD)/wsp_deflate_test)

unit: $(UNIT) $(WSP_FREE_OBJS)

# the test matrix (util/matrix, docs/testing.md): TARGET=debian12 (the
# distribution's nginx), debian13 (its root, util/debian13), openresty,
# nginx-1.30, nginx-1.31; T= a subset of the files.  Without TARGET: what
# CI runs, every target (util/matrix ci)
test: deps e2e-deps deb-deps
	util/matrix $(if $(TARGET),test $(TARGET) $(T),ci)

test-valgrind: deps
	TEST_NGINX_USE_VALGRIND=1 util/matrix test $(or $(TARGET),debian12) $(T)

# the suite with nginx's debug log on (Debian's nginx is built --with-debug):
# every ngx_log_debug*() of the module runs, with its arguments
test-debug: deps
	TEST_NGINX_LOG_LEVEL=debug util/matrix test $(or $(TARGET),debian12) $(T)

# BENCH_TARGET=openresty (or another matrix target): W1's instructions and
# W4's memory on that nginx beside Debian 12's (bench/targets)
bench: deps all
	@test -x bench/run || { echo "bench/run is missing"; exit 1; }
	$(if $(BENCH_TARGET),BENCH_TARGET=$(BENCH_TARGET) bench/targets,bench/run)

# permessage-deflate only (W6, W6c, W4d): report in build/bench/benchmarks.md
bench-deflate: deps all
	BENCH_WORKLOADS=$${BENCH_WORKLOADS:-W6,W6c,W4d} bench/run

# W7 alone: 100,000 idle sessions through one nginx per target (GBs of
# memory, minutes; BENCH_SCALE=100000,200000): report in build/bench/scale.md
bench-scale: deps all
	bench/scale

soak: deps all
	bench/soak

fuzz: deps
	@test -x util/fuzz || { echo "util/fuzz is missing"; exit 1; }
	util/fuzz $${FUZZ_SECONDS:-60}

demo: deps all
	util/demo

# Debian 13 (trixie): the same build and suite in a Debian 13 root made by
# mmdebstrap and entered with chroot (util/debian13, docs/testing.md), with
# Debian 13's nginx 1.26.3 and lua-nginx-module 0.10.28.  Inside, build/ is
# the host's build/debian13/; the root is cached in build/roots/trixie/.
debian13-root:
	util/debian13 setup

test-debian13: debian13-root
	util/debian13 run $(MAKE) all unit
	util/debian13 run util/run-tests $(T)

# the Debian 13 package, built in the root: build/debian13/deb/
deb-debian13: debian13-root
	util/debian13 run $(MAKE) deb

clean:
	rm -rf $(BUILD)
