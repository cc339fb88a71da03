# ngx_http_ws_proxy_module: build, test, benchmark.
#
# The module is built as a --with-compat dynamic module against the nginx
# source tree that Debian's nginx-dev package installs, with the same
# configure flags as Debian's nginx binary, so the .so loads into it.

NGX_SRC      ?= /usr/share/nginx/src
NGX_BIN      ?= /usr/sbin/nginx
BUILD        := $(CURDIR)/build
NGX_BUILD    := $(BUILD)/nginx
MODULE       := $(BUILD)/ngx_http_ws_proxy_module.so
SRCS         := $(wildcard src/*.c src/*.h) config

CC           ?= cc
CFLAGS_UNIT  := -O2 -g -Wall -Wextra -Werror -std=c99 -Isrc

DEB_PKGS := nginx nginx-dev libnginx-mod-http-lua libnginx-mod-http-ndk \
	lua-resty-core libluajit2-5.1-dev libssl-dev libpcre2-dev zlib1g-dev \
	openssl gcc make perl libtest-base-perl libtest-longstring-perl \
	liblist-moreutils-perl libtext-diff-perl liburi-perl libipc-run-perl \
	lua-nginx-websocket python3 python3-websockets valgrind curl \
	procps iproute2 clang libclang-rt-14-dev

.PHONY: all deps e2e-deps unit soak test test-unit test-nginx test-valgrind \
	test-debug bench fuzz demo clean

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

$(NGX_BUILD)/objs/Makefile: config | $(NGX_SRC)/configure
	rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && bash -c '. ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="-g -O2 -fPIC -Wall -Werror" \
	        --with-ld-opt="-fPIC" \
	        --add-dynamic-module=$(CURDIR)' >$(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new inode: a running nginx keeps its mapping of the old file
	cp $(NGX_BUILD)/objs/ngx_http_ws_proxy_module.so $@.tmp && mv -f $@.tmp $@

# unit tests of the codec, without nginx
$(BUILD)/wsp_frame_test: src/ngx_wsp_frame.c src/ngx_wsp_frame.h t/unit/tap.h \
		t/unit/wsp_frame_test.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_UNIT) -o $@ src/ngx_wsp_frame.c t/unit/wsp_frame_test.c

# unit tests of the handshake parser and checks, without nginx
$(BUILD)/wsp_handshake_test: src/ngx_wsp_handshake.c src/ngx_wsp_handshake.h \
		t/unit/tap.h \
		t/unit/wsp_handshake_test.c
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_UNIT) -o $@ src/ngx_wsp_handshake.c \
	    t/unit/wsp_handshake_test.c

UNIT := $(if $(wildcard t/unit/wsp_frame_test.c),$(BUILD)/wsp_frame_test) \
	$(if $(wildcard t/unit/wsp_handshake_test.c),$(BUILD)/wsp_handshake_test)

unit: $(UNIT)

test: deps e2e-deps all $(UNIT)
	util/run-tests

test-valgrind: deps all
	TEST_NGINX_USE_VALGRIND=1 util/run-tests $(T)

# the suite with nginx's debug log on (Debian's nginx is built --with-debug):
# every ngx_log_debug*() of the module runs, with its arguments
test-debug: deps all
	TEST_NGINX_LOG_LEVEL=debug util/run-tests $(T)

bench: deps all
	@test -x bench/run || { echo "bench/run is missing"; exit 1; }
	bench/run

soak: deps all
	bench/soak

fuzz: deps
	@test -x util/fuzz || { echo "util/fuzz is missing"; exit 1; }
	util/fuzz $${FUZZ_SECONDS:-60}

demo: deps all
	util/demo

clean:
	rm -rf $(BUILD)
