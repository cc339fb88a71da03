#!/usr/bin/python3
"""Message rates with real clients (TAP): ws_proxy_limit_messages.

nginx runs with a master process and two workers (reuseport spreads the
connections over both), a zone of 20 messages per second per key,
action=delay.  At the same time, for SECONDS seconds:

* one client (key a) sends ten times the rate, text and binary messages,
  every tenth one fragmented: the rate the upstream receives (its echoes
  are timed by the client) is within 10% of 20 per second; every message
  arrives whole, once and in order; the upstream's own messages to the
  client (200 per second) are not slowed down;
* two clients of one key (b), each held by another worker, send ten times
  the rate each: the two together get the key's rate, not twice it;
* a client held back by a rate of 5 per second (key c) gets the module's
  pings every 200 ms with a 200 ms timeout: its pongs wait in the socket
  behind held messages, and the session does not end by ping_timeout.

A browser (Chromium, when t/012-browser.t's tools are there) sends 30
messages at once under the same zone (key "browser"): they come back in
order at the rate.  Then ws_proxy_status counts the delays
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
from tap import ok, plan, skip

PREFIX = master.prefix("limit-messages")
PORT = int(os.environ.get("TEST_NGINX_LIMIT_MESSAGES_PORT", "20020"))
RATE = 20
SECONDS = 6

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
    ws_proxy_limit_message_zone $arg_k zone=msgs:1m rate=%(rate)dr/s;

    server {
        listen 127.0.0.1:%(port)d reuseport;

        # echoes every message; ?push=n: n texts a second of its own too
        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new({ max_payload_len = 1048576 }))
                local push = tonumber(ngx.var.arg_push or 0)
                if push > 0 then
                    ngx.thread.spawn(function()
                        local i = 0
                        while true do
                            i = i + 1
                            if not wb:send_text("push " .. i) then
                                return
                            end
                            ngx.sleep(1 / push)
                        end
                    end)
                end
                local parts = {}
                while true do
                    local data, typ, err = wb:recv_frame()
                    if not data then
                        ngx.exit(ngx.OK)
                    end
                    if typ == "close" then
                        wb:send_close(err, data)
                        ngx.exit(ngx.OK)
                    end
                    if typ == "ping" then
                        wb:send_pong(data)
                    end
                    if typ == "text" or typ == "binary"
                       or typ == "continuation"
                    then
                        parts[#parts + 1] = data
                        if err ~= "again" then
                            wb:send_text(table.concat(parts))
                            parts = {}
                        end
                    end
                end
            }
        }

        location /status { ws_proxy_status; }

        location /ws {
            ws_proxy_zone_key "k-$arg_k";
            ws_proxy_limit_messages zone=msgs;
            add_header X-Worker $pid always;
            ws_proxy_pass ws://127.0.0.1:%(port)d/echo$is_args$args;
        }

        location /slow {
            ws_proxy_zone_key "slow";
            ws_proxy_limit_messages rate=5r/s;
            ws_proxy_ping_interval 200ms;
            ws_proxy_ping_timeout 200ms;
            ws_proxy_pass ws://127.0.0.1:%(port)d/echo;
        }
    }
}
"""


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path),
                                timeout=5 * vg.SLOW) as r:
        return r.read().decode()


async def connect(path, ping_interval=None):
    return await websockets.connect("ws://127.0.0.1:%d%s" % (PORT, path),
                                    open_timeout=10 * vg.SLOW,
                                    close_timeout=10 * vg.SLOW,
                                    ping_interval=ping_interval,
                                    max_size=None, max_queue=None)


def payload(i):
    """Message i: its number and a body that shows a split or a mix-up."""
    return "m%d:" % i + ("%d," % i) * (i % 7 + 1)


async def flood(ws, tag, seconds, per_second):
    """Sends per_second messages a second (ten times the rate) for
    `seconds`, or as fast as TCP lets them go once the proxy holds them
    back; every tenth fragmented.  Returns how many were sent."""
    start = time.monotonic()
    i = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            return i
        # what is due by now: a loop slowed by a loaded machine catches up
        # at once instead of sending less than ten times the rate
        due = int(elapsed * per_second) + 1
        while i < due:
            text = tag + payload(i)
            if i % 10 == 5:
                half = len(text) // 2
                await ws.send([text[:half], text[half:]])
            else:
                await ws.send(text)
            i += 1
        await asyncio.sleep(1 / per_second)


async def collect(ws, tag, seconds, got, pushes=None):
    """The echoes of `tag`'s messages (their arrival times), and the
    upstream's own messages, until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            msg = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            return
        if isinstance(msg, bytes):
            msg = msg.decode()
        if msg.startswith("push "):
            if pushes is not None:
                pushes.append(time.monotonic())
            continue
        got.append((time.monotonic(), msg))


async def abort(ws):
    """The end of a flooding client: its TCP connection reset, as a
    client that goes away does (a close frame would wait its turn behind
    everything it sent and the proxy holds back, at the rate)."""
    transport = getattr(ws, "transport", None)
    if transport is None:
        await ws.close()
        return
    transport.abort()


def rate_of(times):
    """Messages per second over the span of their arrival times."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def in_order(got, tag):
    """Every echo of tag's messages whole, once and in order (from 0)."""
    mine = [m for _, m in got if m.startswith(tag)]
    want = [tag + payload(i) for i in range(len(mine))]
    return mine == want, len(mine)


async def single():
    """Key a: one client, ten times the rate, and pushes the other way."""
    ws = await connect("/ws?k=a&push=200")
    got, pushes = [], []
    sender = asyncio.ensure_future(flood(ws, "a", SECONDS, 10 * RATE))
    await collect(ws, "a", SECONDS, got, pushes)
    sent = await sender
    await abort(ws)
    return sent, got, pushes


async def on_two_workers(key):
    """Two sessions of one key held by two different workers."""
    held = []
    for _ in range(40):
        ws = await connect("/ws?k=%s" % key)
        worker = headers(ws, "response").get("X-Worker")
        if held and worker == held[0][1]:
            await ws.close()
            continue
        held.append((ws, worker))
        if len(held) == 2:
            break
    return held


async def shared():
    """Key b: two clients on two workers, ten times the rate each."""
    held = await on_two_workers("b")
    if len(held) < 2:
        return None, []
    got = []
    tasks = []
    for n, (ws, _) in enumerate(held):
        tag = "b%d-" % n
        tasks.append(flood(ws, tag, SECONDS, 10 * RATE))
        tasks.append(collect(ws, tag, SECONDS, got))
    await asyncio.gather(*tasks)
    for ws, _ in held:
        await abort(ws)
    return sorted(w for _, w in held), got


async def heartbeats():
    """Key c: held back 4 s by 5 messages a second, pinged every 200 ms;
    the client (websockets) answers each ping, behind held messages."""
    ws = await connect("/slow", ping_interval=None)
    n = 5 * (SECONDS - 2)
    for i in range(n):
        await ws.send("c" + payload(i))
    got = []
    await collect(ws, "c", SECONDS, got)
    await ws.close()
    return n, got, ws.close_code


async def main():
    (sent, got, pushes), (workers, got_b), (n_c, got_c, code_c) = \
        await asyncio.gather(single(), shared(), heartbeats())

    whole, n = in_order(got, "a")
    r = rate_of([t for t, m in got])
    ok(sent >= 8 * RATE * (SECONDS - 1),
       "key a: the client sent %d messages in %d s (ten times %d/s, as "
       "TCP let it)" % (sent, SECONDS, RATE))
    ok(abs(r - RATE) <= RATE * 0.1,
       "key a: the upstream received %.2f messages/s (%d in %d s), within "
       "10%% of %d" % (r, n, SECONDS, RATE))
    ok(whole and n > 0, "key a: %d messages whole, once, in order (every "
       "tenth fragmented)" % n)
    pr = rate_of(pushes)
    # under valgrind the Lua upstream itself sends slower
    ok(pr >= 200 * (0.5 if vg.USE else 0.75),
       "key a: the upstream's own messages were not held: %.0f/s of 200/s"
       % pr)

    ok(workers is not None and len(set(workers)) == 2,
       "key b: two sessions on two workers %s" % workers)
    rb = rate_of([t for t, m in got_b])
    whole0, n0 = in_order(got_b, "b0-")
    whole1, n1 = in_order(got_b, "b1-")
    ok(abs(rb - RATE) <= RATE * 0.1,
       "key b: the two sessions together received %.2f messages/s "
       "(%d + %d), the key's rate, not twice it" % (rb, n0, n1))
    ok(whole0 and whole1 and n0 > 0 and n1 > 0,
       "key b: each session's messages whole and in order")

    whole_c, nc = in_order(got_c, "c")
    ok(whole_c and nc == n_c and code_c == 1000,
       "heartbeats: %d of %d messages held back over %d s of 200 ms pings, "
       "the session still open (closed with %s)" % (nc, n_c, SECONDS,
                                                     code_c))


def browser():
    """Chromium's WebSocket under the rate (t/e2e/limit_browser.mjs)."""
    chrome = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    mods = os.path.join(target.ROOT, "t", "e2e", "node_modules",
                        "playwright-core")
    if not (os.access(chrome, os.X_OK) and os.path.isdir(mods)
            and shutil.which("node")):
        skip("the browser", "chromium, node or playwright-core missing "
             "(make e2e-deps)")
        return
    n = 30
    r = subprocess.run(["node", os.path.join(target.ROOT, "t", "e2e",
                                             "limit_browser.mjs"),
                        "ws://127.0.0.1:%d/ws?k=browser" % PORT, str(n)],
                       capture_output=True, text=True, timeout=60 * vg.SLOW)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": (r.stdout + r.stderr)[-300:]}
    echoes, times = res.get("echoes", []), res.get("times", [])
    want = ["browser m%d:" % i + "x" * i for i in range(n)]
    ok(echoes == want, "the browser: %d messages sent at once came back "
       "whole and in order %s" % (n, res.get("error", "")))
    r = rate_of([t / 1000.0 for t in times])
    ok(abs(r - RATE) <= RATE * 0.1, "the browser: at %.2f messages/s, the "
       "key's rate" % r)


def metrics():
    time.sleep(1.5 * vg.PAUSE)      # a second's flush of the counters
    j = json.loads(get("/status?format=json"))["keys"]
    a = j.get("k-a", {}).get("messages_delayed", {}).get("client", 0)
    ok(a > RATE * (SECONDS - 2),
       "ws_proxy_status: key k-a has %d messages delayed" % a)
    text = get("/status")
    ok("# HELP ws_proxy_messages_delayed_total " in text
       and "# HELP ws_proxy_message_delay_seconds_total " in text,
       "the text format: the delays' counters with their HELP")
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    ok(r.returncode == 0, "promtool check metrics: %s"
       % (r.stdout + r.stderr).strip().replace("\n", "; ")[:300])


def run():
    if not shutil.which("promtool"):
        print("1..0 # SKIP promtool missing (Debian's prometheus package: "
              "make deps)")
        sys.exit(0)
    shutil.rmtree(PREFIX, ignore_errors=True)
    logdir = os.path.join(PREFIX, "logs")
    os.makedirs(logdir)
    log = os.path.join(logdir, "error.log")
    with open(os.path.join(PREFIX, "nginx.conf"), "w") as f:
        f.write(CONF % {**target.CONF, "port": PORT, "rate": RATE,
                        "daemon": "off" if vg.USE else "on"})
    status_ = None
    try:
        proc = vg.start(master.nginx_cmd(PREFIX), logdir, PORT)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
    else:
        try:
            asyncio.run(main())
            browser()
            metrics()
        except Exception as e:  # a failed step must not hide the summary
            ok(False, "limit messages test: %r" % e)
        finally:
            master.stop(PREFIX)
            status_ = vg.wait(proc)

    text = open(log).read() if os.path.exists(log) else ""
    ok("[alert]" not in text and "[crit]" not in text and
       "[emerg]" not in text and "[error]" not in text,
       "no [alert], [crit], [emerg] or [error]")
    ok("ping_timeout" not in text and "did not answer" not in text,
       "no ping timeout")
    vg.check(ok, logdir, status_)
    sys.exit(plan())


run()
