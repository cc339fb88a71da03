#!/usr/bin/python3
"""The README's example, run as written (TAP).

The first ```nginx block of README.md becomes the nginx.conf of an nginx
started as the README says (nginx -p <prefix> -c <file>), with only the
repository's path put in place of /path/to and the two ports moved to the
test's (TEST_NGINX_PORT, TEST_NGINX_UPSTREAM_PORT): it must start, echo a
message through the proxy, drop one with "secret", close normally, and log
no [alert], [crit] or [emerg].
"""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time

import websockets

import target
from tap import ok, plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = target.prefix("readme")
PORT = int(os.environ.get("TEST_NGINX_PORT", "1984"))
UPSTREAM_PORT = int(os.environ.get("TEST_NGINX_UPSTREAM_PORT", "1985"))

def example():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    m = re.search(r"^```nginx\n(.*?)^```$", readme, re.S | re.M)
    conf = m.group(1)
    # the target's modules and Lua paths in place of Debian's (util/run-tests)
    conf = re.sub(r"^(load_module [^\n]*\n)+", target.LOAD_MODULES, conf,
                  flags=re.M)
    conf = conf.replace('lua_package_path "/path/to/lib/?.lua;;"',
                        'lua_package_path "%s"' % target.CONF["lua_path"])
    conf = conf.replace("/path/to/", ROOT + "/")
    conf = conf.replace(":8080", ":%d" % PORT)
    conf = conf.replace(":9001", ":%d" % UPSTREAM_PORT)
    return conf


async def session():
    uri = "ws://127.0.0.1:%d/ws" % PORT
    async with websockets.connect(uri) as ws:
        await ws.send("hello")
        first = await asyncio.wait_for(ws.recv(), 5)
        await ws.send("a secret")
        await ws.send("bye")
        second = await asyncio.wait_for(ws.recv(), 5)
        await ws.close(1000, "done")
        return first, second, ws.close_code


def main():
    shutil.rmtree(PREFIX, ignore_errors=True)
    os.makedirs(os.path.join(PREFIX, "logs"))
    conf = os.path.join(PREFIX, "example.conf")
    with open(conf, "w") as f:
        f.write(example())

    # started as the README says: nginx goes to the background
    cmd = [target.NGINX, "-p", PREFIX + "/", "-c", conf]
    pidfile = os.path.join(PREFIX, "logs", "nginx.pid")
    start = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    try:
        up = False
        for _ in range(50):
            if start.returncode == 0 and os.path.exists(pidfile):
                up = True
                break
            time.sleep(0.1)
        ok(up, "the example starts (%s)" % (start.stderr.strip()
                                             or "running"))

        if up:
            time.sleep(0.2)
            try:
                first, second, code = asyncio.run(session())
            except Exception as e:
                first, second, code = None, None, repr(e)
            ok(first == "hello", "a message comes back (%r)" % first)
            ok(second == "bye",
               "a message with \"secret\" is dropped (next: %r)" % second)
            ok(code == 1000, "the session closes normally (%r)" % code)
    finally:
        if os.path.exists(pidfile):
            subprocess.run(cmd + ["-s", "quit"], stderr=subprocess.DEVNULL)
            for _ in range(100):
                if not os.path.exists(pidfile):
                    break
                time.sleep(0.1)

    try:
        with open(os.path.join(PREFIX, "logs", "error.log")) as f:
            errors = f.read()
    except OSError:
        errors = ""
    ok(not re.search(r"\[(alert|crit|emerg)\]", errors),
       "no [alert], [crit] or [emerg]")

    return plan()


if __name__ == "__main__":
    sys.exit(main())
