#!/usr/bin/env perl
# ws_proxy_pass in an nginx that loads only this module, without
# ngx_http_lua_module and NDK: t/e2e/no_lua.py (its own nginx, Python
# peers).
use strict;
use warnings;

exec '/usr/bin/python3', 't/e2e/no_lua.py' or die "cannot run python3: $!";
