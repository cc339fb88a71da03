#!/usr/bin/python3
"""Session caps across two workers (TAP): ws_proxy_limit_sessions.

nginx runs with a master process and two workers (reuseport spreads the
connections over both), a cap of 4 sessions per key in a zone they share.
Sessions are opened, and closed and opened again, until both workers hold
some; then every further session is refused with 429 whichever worker
takes it (each answer names its worker), and the upstream never sees a
connection for a refused one.  Closing a session frees its slot at once: a
new one is admitted right after, by either worker.  After a reload whose
worker_shutdown_timeout ends the old workers' sessions, their slots are
free for the new workers.  ws_proxy_status counts the refusals
(promtool-valid).
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

import master
import target
import vg
from wscompat import headers
from tap import ok, plan

PREFIX = master.prefix("limit-sessions")
PORT = int(os.environ.get("TEST_NGINX_LIMIT_PORT", "20010"))
CAP = 4

CONF = """
%(load_modules)s
worker_processes 2;
daemon %(daemon)s;
master_process on;
worker_shutdown_timeout 1s;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 512; }
http {
    access_log off;
    lua_package_path "%(lua_path)s";
    ws_proxy_zone wsp 64k;
    ws_proxy_limit_session_zone $arg_k zone=perkey:1m;

    server {
        listen 127.0.0.1:%(port)d reuseport;

        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                ngx.log(ngx.INFO, "upstream session ", ngx.var.arg_k)
                while true do
                    local data, typ, err = wb:recv_frame()
                    if not data then return end
                    if typ == "close" then
                        wb:send_close(err, data)
                        return
                    end
                    wb:send_text(data)
                end
            }
        }

        location /status { ws_proxy_status; }

        location /ws {
            ws_proxy_zone_key "k-$arg_k";
            ws_proxy_limit_sessions zone=perkey %(cap)d;
            add_header X-Worker $pid always;
            ws_proxy_pass ws://127.0.0.1:%(port)d/echo;
        }
    }
}
"""


def nginx_cmd():
    return master.nginx_cmd(PREFIX)


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path),
                                timeout=5 * vg.SLOW) as r:
        return r.read().decode()


def upgrade(key):
    """A raw upgrade request: (status, the X-Worker that answered); the
    connection is closed at once (a refused one has nothing more)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(("GET /ws?k=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
               % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.close()
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    worker = next((l.split(":", 1)[1].strip() for l in lines
                   if l.lower().startswith("x-worker:")), None)
    return status, worker


async def session(key):
    """An admitted session: (its websocket, the worker that holds it)."""
    ws = await websockets.connect("ws://127.0.0.1:%d/ws?k=%s" % (PORT, key),
                                  open_timeout=10 * vg.SLOW,
                                  close_timeout=10 * vg.SLOW,
                                  ping_interval=None)
    await ws.send("hi")
    await ws.recv()
    return ws, headers(ws, "response").get("X-Worker")


def upstream_sessions(log, key):
    with open(log) as f:
        return sum(1 for l in f if "upstream session %s," % key in l)


async def spread(key):
    """CAP sessions of key, on both workers: while one worker holds them
    all, one of them is closed and another opened (admitted at once)."""
    held = [await session(key) for _ in range(CAP)]
    reopened = tries = 0
    while len(set(w for _, w in held)) < 2 and tries < 40:
        tries += 1
        ws, _ = held.pop(0)
        await ws.close()
        held.append(await session(key))
        reopened += 1
    return held, reopened


async def main(log):
    held, reopened = await spread("a")
    workers = set(w for _, w in held)
    ok(len(held) == CAP and len(workers) == 2,
       "%d sessions of key a held by two workers %s (%d closed and "
       "another admitted at once)" % (len(held), sorted(workers), reopened))

    # the one beyond the cap: 429 whichever worker takes it
    refused, seen = [], set()
    for _ in range(40):
        status, worker = upgrade("a")
        refused.append(status)
        seen.add(worker)
        if len(seen) == 2 and len(refused) >= 6:
            break
    ok(all(s == 429 for s in refused) and len(seen) == 2,
       "%d sessions beyond the cap: all 429 (%s), from both workers %s"
       % (len(refused), sorted(set(refused)), sorted(seen, key=str)))
    ok(upstream_sessions(log, "a") == CAP + reopened,
       "the upstream saw %d sessions: none for a refused one"
       % (CAP + reopened))

    # another key has its own slots
    other = await session("b")
    ok(other is not None, "key b is admitted while key a is full")
    await other[0].close()

    # a closed session's slot is free at once, for either worker
    fresh = 0
    for i in range(6):
        ws, _ = held.pop(0)
        await ws.close()
        try:
            held.append(await session("a"))
            fresh += 1
        except Exception as e:
            print("# reopen %d: %r" % (i, e))
    ok(fresh == 6, "6 times: a session closed, the next admitted at once "
       "(%d)" % fresh)
    status, _ = upgrade("a")
    ok(status == 429, "and the cap still holds: %d" % status)

    # metrics
    j = json.loads(get("/status?format=json"))["keys"].get("k-a", {})
    n429 = len(refused) + 1
    ok(j.get("sessions_refused") == n429,
       "ws_proxy_status: sessions_refused of k-a is %d (%s)"
       % (n429, j.get("sessions_refused")))
    text = get("/status")
    ok('ws_proxy_sessions_refused_total{key="k-a"} %d\n' % n429 in text
       and "# HELP ws_proxy_sessions_refused_total " in text,
       "the text format: ws_proxy_sessions_refused_total with its HELP")
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    ok(r.returncode == 0, "promtool check metrics: %s"
       % (r.stdout + r.stderr).strip().replace("\n", "; ")[:300])
    await after_reload(held)
    return n429 + 1


async def after_reload(held):
    """worker_shutdown_timeout ends the old workers' sessions (1001): their
    slots are free for the new workers."""
    r = master.nginx(PREFIX, "-s", "reload")
    ok(r.returncode == 0, "nginx -s reload: %s" % r.stderr.strip())
    codes = []
    for ws, _ in held:
        try:
            await asyncio.wait_for(ws.wait_closed(), 15 * vg.SLOW)
        except asyncio.TimeoutError:
            pass
        codes.append(ws.close_code)
    ok(codes == [1001] * len(held),
       "worker_shutdown_timeout closed the old workers' sessions: %s"
       % codes)
    # the old workers are gone: their slots went with their sessions
    deadline = time.time() + 10 * vg.SLOW
    again = []
    while time.time() < deadline and len(again) < CAP:
        try:
            again.append(await session("a"))
        except Exception:
            await asyncio.sleep(0.1)
    status, _ = upgrade("a")
    ok(len(again) == CAP and status == 429,
       "after the reload: %d sessions admitted, the next %d"
       % (len(again), status))
    for ws, _ in again:
        await ws.close()


def conf_errors():
    """nginx -t: what limit_conn refuses, with the module's words."""
    for http, want in [
            ("server { listen 127.0.0.1:%d; location /ws {"
             " ws_proxy_limit_sessions zone=nope 2; return 204; } }" % PORT,
             'unknown ws_proxy_limit_session_zone "nope"'),
            ("ws_proxy_limit_session_zone $arg_k zone=z;",
             'invalid zone size "zone=z"'),
            ("ws_proxy_limit_session_zone $arg_k zone=z:1m;"
             " ws_proxy_limit_sessions z 0;",
             'invalid number of sessions "0"')]:
        r = master.conf_test(PREFIX, http)
        ok(r.returncode != 0 and want in r.stderr,
           "nginx -t refuses: %s" % want)


def run():
    if not shutil.which("promtool"):
        print("1..0 # SKIP promtool missing (Debian's prometheus package: "
              "make deps)")
        sys.exit(0)
    logdir, log = master.prepare(PREFIX, CONF, port=PORT, cap=CAP)
    conf_errors()
    refusals, status_ = master.serve(PREFIX, PORT, "limit sessions test",
                                     lambda: main(log), ok)
    if refusals is None:
        refusals = -1

    text = master.no_alert(ok, log)
    lines = text.count('too many sessions for key "a" in zone "perkey" '
                       '(limit %d), session refused' % CAP)
    ok(lines == refusals, "one [warn] line per refusal: %d lines, %d "
       "refusals" % (lines, refusals))
    vg.check(ok, logdir, status_)
    sys.exit(plan())


run()
