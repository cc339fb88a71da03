"""The nginx under test, for the scripts that start their own nginx.

The matrix's parameters (util/run-tests, docs/testing.md): the binary
(TEST_NGINX_BINARY), the load_module list with this project's .so last
(TEST_NGINX_LOAD_MODULES; no ndk or lua for an nginx with Lua built in), the
Lua paths (TEST_NGINX_LUA_PATH), where prefixes go (TEST_NGINX_WORKDIR).
Run alone, a script asks util/run-tests --env for them (the "debian"
target's unless set).
"""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

if not os.environ.get("TEST_NGINX_BINARY"):
    _out = subprocess.run([os.path.join(ROOT, "util", "run-tests"), "--env"],
                          capture_output=True, text=True, check=True).stdout
    for _line in _out.splitlines():
        _k, _, _v = _line.partition("=")
        os.environ.setdefault(_k, _v)

NGINX = os.environ["TEST_NGINX_BINARY"]
NAME = os.environ.get("TEST_NGINX_TARGET", "")
MODULES = os.environ.get("TEST_NGINX_LOAD_MODULES", "").split()
WS_PROXY_MODULE = next((m for m in reversed(MODULES)
                        if m.endswith("/ngx_http_ws_proxy_module.so")),
                       os.path.join(ROOT, "build",
                                    "ngx_http_ws_proxy_module.so"))
# dynamic (ndk and lua among MODULES), builtin (OpenResty) or none
LUA = os.environ.get("TEST_NGINX_LUA", "dynamic")
WORKDIR = os.environ.get("TEST_NGINX_WORKDIR") or os.path.join(ROOT, "build")

LOAD_MODULES = "".join("load_module %s;\n" % m for m in MODULES)
LUA_EXTRA = ";".join(p for p in os.environ.get("TEST_NGINX_LUA_PATH",
                                               "").split(";") if p)
# as util/run-tests does: an nginx with Lua built in loads resty.core even
# where the configuration has no lua_package_path (ws_proxy_pass alone)
if LUA_EXTRA:
    os.environ.setdefault("LUA_PATH", LUA_EXTRA + ";;")


def lua_path(*entries):
    """lua_package_path's value: entries, the target's, the default."""
    return ";".join(list(entries) + ([LUA_EXTRA] if LUA_EXTRA else [])
                    + [";"])


def prefix(name):
    """An nginx prefix of the script's own, under TEST_NGINX_WORKDIR."""
    return os.path.join(WORKDIR, name)


# what the nginx.conf templates of the scripts take
CONF = {
    "root": ROOT,
    "load_modules": LOAD_MODULES,
    "ws_proxy_module": WS_PROXY_MODULE,
    "lua_path": lua_path(os.path.join(ROOT, "lib", "?.lua")),
}
