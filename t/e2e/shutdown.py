#!/usr/bin/python3
"""Reload and graceful shutdown with live proxied sessions (TAP).

nginx runs with a master process (Test::Nginx runs without one, so this is
its own script): a session opened before `nginx -s reload` keeps working in
the old worker while new sessions go to the new one; after `nginx -s quit`
the old worker keeps serving until worker_shutdown_timeout, then both peers
get 1001 and the worker exits; no [alert] or [crit] is logged.
"""

import asyncio
import os
import signal
import sys
import time

import websockets

import target
import vg
from tap import ok, plan
import master

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = target.prefix("shutdown")
PORT = int(os.environ.get("TEST_NGINX_SHUTDOWN_PORT", "19980"))

CONF = """
%(load_modules)s
worker_processes 1;
daemon %(daemon)s;
master_process on;
worker_shutdown_timeout %(wst)ds;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    lua_package_path "%(lua_path)s";
    server {
        listen 127.0.0.1:%(port)d;
        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                while true do
                    local data, typ, err = wb:recv_frame()
                    if not data then return end
                    ngx.log(ngx.INFO, "upstream got ", typ, " ", data, " ",
                            err)
                    if typ == "close" then
                        wb:send_close(err, data)
                        return
                    end
                    wb:send_text("pid " .. ngx.worker.pid() .. ": " .. data)
                end
            }
        }
        location /ws {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                assert(p:connect("ws://127.0.0.1:%(port)d/echo"))
                local ok, err = p:execute()
                ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            }
        }
    }
}
"""

def nginx_cmd():
    return master.nginx_cmd(PREFIX)


def nginx(*args):
    return master.nginx(PREFIX, *args)


def master_pid():
    return master.master_pid(PREFIX)


alive = master.alive


async def main():
    url = "ws://127.0.0.1:%d/ws" % PORT

    # under valgrind a worker takes seconds to start and to answer
    opts = {"open_timeout": 10 * vg.SLOW, "close_timeout": 10 * vg.SLOW,
            "ping_interval": None}

    old = await websockets.connect(url, **opts)
    await old.send("before reload")
    first = await old.recv()
    old_pid = first.split(":")[0]
    ok(first.endswith("before reload"), "a session works: " + first)

    r = nginx("-s", "reload")
    ok(r.returncode == 0, "nginx -s reload")
    await asyncio.sleep(1 * vg.PAUSE)

    await old.send("after reload")
    again = await old.recv()
    ok(again == old_pid + ": after reload",
       "the old session still runs in the old worker: " + again)

    new = await websockets.connect(url, **opts)
    await new.send("new session")
    fresh = await new.recv()
    ok(fresh.endswith("new session") and not fresh.startswith(old_pid + ":"),
       "a new session goes to the new worker: " + fresh)
    await new.close()

    mpid = master_pid()
    r = nginx("-s", "quit")
    ok(r.returncode == 0, "nginx -s quit")
    await asyncio.sleep(0.5 * vg.PAUSE)

    await old.send("during shutdown")
    during = await old.recv()
    ok(during == old_pid + ": during shutdown",
       "the session is served during the graceful shutdown")

    t0 = time.time()
    try:
        await asyncio.wait_for(old.recv(), 10 * vg.SLOW)
        ok(False, "a close frame at worker_shutdown_timeout")
    except websockets.exceptions.ConnectionClosed as e:
        ok(e.code == 1001,
           "after worker_shutdown_timeout the client gets 1001 (%s, %.1fs)"
           % (e.code, time.time() - t0))
    except asyncio.TimeoutError:
        ok(False, "a close frame at worker_shutdown_timeout (timed out)")

    for _ in range(50 * vg.SLOW):
        if not alive(mpid):
            break
        await asyncio.sleep(0.1)
    ok(not alive(mpid), "nginx exited")


def run():
    os.makedirs(os.path.join(PREFIX, "logs"), exist_ok=True)
    log = os.path.join(PREFIX, "logs", "error.log")
    if os.path.exists(log):
        os.unlink(log)
    with open(os.path.join(PREFIX, "nginx.conf"), "w") as f:
        f.write(CONF % {**target.CONF, "root": ROOT, "port": PORT,
                        "daemon": "off" if vg.USE else "on",
                        "wst": 2 * vg.PAUSE})
    logdir = os.path.join(PREFIX, "logs")
    status = None
    try:
        proc = vg.start(nginx_cmd(), logdir, PORT)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
    else:
        try:
            asyncio.run(main())
        except Exception as e:  # a failed step must not hide the summary
            ok(False, "shutdown test: %r" % e)
        finally:
            # normally gone already (the test's -s quit)
            master.stop(PREFIX, signal.SIGTERM, 5)
            status = vg.wait(proc)

    text = open(log).read() if os.path.exists(log) else ""
    ok("[alert]" not in text and "[crit]" not in text and
       "[emerg]" not in text, "no [alert], [crit] or [emerg]")
    ok("worker is shutting down, closing the session" in text,
       "the session was closed by the shutdown, and logged")
    vg.check(ok, logdir, status)
    sys.exit(plan())


run()
