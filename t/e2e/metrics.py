#!/usr/bin/python3
"""ws_proxy_zone and ws_proxy_status with two workers (TAP).

nginx runs with a master process and two workers (reuseport spreads the
connections over both); sessions, handshake failures, a violation, a limit
and a hook error go through it, and the status endpoint must show them
summed over the workers: live while a session runs (the flush timer), and
final once it ended.  Its text passes `promtool check metrics`, its JSON
parses, a real Prometheus server (its data under this test's prefix)
scrapes it every second and answers a PromQL query with the expected
total, and a zone that is full counts new keys under "other".
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import websockets

import master
import target
import vg
from tap import ok, plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = master.prefix("metrics")
PORT = int(os.environ.get("TEST_NGINX_METRICS_PORT", "19960"))
PROM_PORT = int(os.environ.get("TEST_NGINX_PROMETHEUS_PORT", "19961"))
# a server that takes connections and never answers an upgrade
HANG_PORT = int(os.environ.get("TEST_NGINX_HANG_PORT", str(PORT + 3)))
FULL_KEYS = 200
SCRAPES = 3     # of the text format, and by Prometheus
FAMILIES = 17   # metric families of the text format

CONF = """
%(load_modules)s
worker_processes 2;
daemon %(daemon)s;
master_process on;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 512; }
http {
    access_log off;
    lua_package_path "%(lua_path)s";
    ws_proxy_zone wsp 32k;

    server {
        listen 127.0.0.1:%(port)d reuseport;

        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                while true do
                    local data, typ, err = wb:recv_frame()
                    if not data then return end
                    if typ == "close" then
                        wb:send_close(err, data)
                        return
                    end
                    wb:send_text("pid " .. ngx.worker.pid() .. ": " .. data)
                end
            }
        }

        location /deny { return 403; }
        location /hang { content_by_lua_block { ngx.sleep(5) } }

        location /status { ws_proxy_status; }

        location /ws {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return end
                p:execute()
            }
        }

        location /tenant {
            ws_proxy_zone_key "tenant-$arg_t";
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }

        location /full {
            ws_proxy_zone_key $arg_k;
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return end
                p:execute()
            }
        }

        location /refuse {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/deny")
                if not ok then return end
                p:execute()
            }
        }

        location /unreach {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:1/")
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }

        location /slow {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/hang",
                                          { read_timeout = 300 })
                if not ok then return ngx.exit(504) end
                p:execute()
            }
        }

        location /limit {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new({
                    client_max_frame_size = 10 }))
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }

        location /hookerr {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new({
                    on_frame = function() error("boom") end }))
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }

        location /viol {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://127.0.0.1:%(port)d/echo")
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }

        # the group's first server times out, the second one answers
        location /failover {
            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new())
                local ok, err = p:connect("ws://slow_first/echo",
                                          { read_timeout = 300 })
                if not ok then return ngx.exit(502) end
                p:execute()
            }
        }
    }

    upstream slow_first {
        server 127.0.0.1:%(hang)d;
        server 127.0.0.1:%(port)d;
    }

    server {
        listen 127.0.0.1:%(hang)d;
        location / { content_by_lua_block { ngx.sleep(5) } }
    }
}
"""

PROM_CONF = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: wsp
    metrics_path: /status
    static_configs:
      - targets: ['127.0.0.1:%d']
"""

def nginx_cmd():
    return [target.NGINX, "-p", PREFIX + "/", "-c",
            os.path.join(PREFIX, "nginx.conf")]


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path),
                                timeout=5 * vg.SLOW) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def status():
    return json.loads(get("/status?format=json")[1])["keys"]


def wait_for(pred, seconds):
    """pred() until it holds, for at most seconds (times the slowness)."""
    deadline = time.time() + seconds * vg.SLOW
    while True:
        try:
            v = pred()
        except Exception:
            v = None
        if v or time.time() > deadline:
            return v
        time.sleep(0.1)


def k(key, *path):
    v = status().get(key, {})
    for p in path:
        v = v.get(p, {})
    return v if v != {} else 0


def raw_violation():
    """A client frame with RSV2 set: a protocol violation (1002)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(b"GET /viol HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    s.sendall(bytes([0xa1, 0x81, 1, 2, 3, 4, ord("x") ^ 1]))
    data = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
    try:
        while len(data) < 4:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    return head.startswith(b"HTTP/1.1 101") and data[:1] == b"\x88" \
        and data[2:4] == b"\x03\xea"


async def session(path, msgs):
    opts = {"open_timeout": 10 * vg.SLOW, "close_timeout": 10 * vg.SLOW,
            "ping_interval": None}
    ws = await websockets.connect("ws://127.0.0.1:%d%s" % (PORT, path),
                                  **opts)
    pid = None
    for i in range(msgs):
        await ws.send("m%d" % i)
        pid = (await ws.recv()).split(":")[0]
    return ws, pid


async def fails(path):
    try:
        ws = await websockets.connect("ws://127.0.0.1:%d%s" % (PORT, path),
                                      open_timeout=10 * vg.SLOW)
        await ws.close()
        return False
    except Exception:
        return True


async def main():
    # live: a running session shows within the flush interval
    ws, _ = await session("/tenant?t=live", 3)
    live = wait_for(lambda: k("tenant-live", "frames", "client") >= 3
                    and k("tenant-live", "sessions_open") == 1, 3)
    ok(live, "a running session's frames and sessions_open show live "
       "(key from ws_proxy_zone_key with a variable)")
    await ws.close()
    ok(wait_for(lambda: k("tenant-live", "sessions_open") == 0
                and k("tenant-live", "closes", "client", "1000") == 1, 3),
       "its end: sessions_open 0, one close 1000 from the client")

    # sessions over both workers
    pids, socks = set(), []
    while len(socks) < 40 and (len(pids) < 2 or len(socks) < 4):
        batch = await asyncio.gather(*[session("/ws", 3) for _ in range(4)])
        for w, pid in batch:
            socks.append(w)
            pids.add(pid)
    total = len(socks)
    ok(len(pids) == 2, "%d sessions served by two workers: %s"
       % (total, sorted(pids)))
    ok(wait_for(lambda: k("/ws", "sessions_open") == total, 3),
       "sessions_open is %d, summed over the workers" % total)
    await asyncio.gather(*[w.close() for w in socks])

    def final():
        s = status()["/ws"]
        return (s["sessions_open"] == 0 and s["sessions_total"] == total
                and s["session_duration_seconds"]["count"] == total) and s
    s = wait_for(final, 5)
    ok(bool(s), "sessions_total %d, none open, %d durations" % (total, total))
    s = s or status().get("/ws", {})
    ok(s.get("messages") == {"client": 3 * total, "upstream": 3 * total},
       "messages per sender: %s" % s.get("messages"))
    ok(s.get("frames", {}).get("client", 0) == 4 * total,
       "client frames: 3 messages and a close each")
    ok(s.get("handshakes", {}).get("accepted") == total,
       "handshakes accepted: %s" % s.get("handshakes"))
    ok(s.get("closes", {}).get("client", {}).get("1000") == total
       and s.get("closed_by", {}).get("client") == total,
       "closes: %s, closed_by: %s" % (s.get("closes"), s.get("closed_by")))

    # handshake failures
    ok(await fails("/refuse") and await fails("/unreach")
       and await fails("/slow"), "refused, unreachable, timeout fail")
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/ws" % PORT,
                               timeout=5 * vg.SLOW)
        bad = False
    except urllib.error.HTTPError as e:
        bad = e.code == 400
    ok(bad, "a plain GET to /ws gets 400")

    st = status()
    ok(st.get("/refuse", {}).get("handshakes", {}).get("refused") == 1
       and st["/refuse"]["handshakes"]["refused_by_status"] == {"403": 1},
       "refused by the upstream, with its status 403")
    ok(st.get("/unreach", {}).get("handshakes", {}).get("unreachable") == 1,
       "upstream unreachable")
    ok(st.get("/slow", {}).get("handshakes", {}).get("timeout") == 1,
       "upstream timeout")
    ok(st["/ws"]["handshakes"]["bad_request"] == 1, "bad client request")

    # a group's server that timed out, then the next one that answered:
    # the session's outcome is the last attempt's
    ws, _ = await session("/failover", 1)
    await ws.close()
    hs = status().get("/failover", {}).get("handshakes", {})
    ok(hs.get("accepted") == 1 and not hs.get("timeout"),
       "a timeout, then failover to a server that answers: counted as "
       "accepted, not as a timeout (%s)" % hs)

    # a violation, a limit, a hook error
    ok(raw_violation(), "a frame with RSV2 is closed with 1002")
    ws, _ = await session("/limit", 0)
    await ws.send("x" * 100)
    try:
        await asyncio.wait_for(ws.recv(), 5 * vg.SLOW)
    except Exception:
        pass
    ws, _ = await session("/hookerr", 0)
    await ws.send("x")
    try:
        await asyncio.wait_for(ws.recv(), 5 * vg.SLOW)
    except Exception:
        pass
    ok(wait_for(lambda: k("/viol", "protocol_violations", "client",
                          "protocol_error") == 1, 3),
       "protocol violation counted, by sender and kind")
    ok(wait_for(lambda: k("/limit", "limits", "client", "frame_size") == 1,
                3), "limit counted: frame_size from the client")
    ok(wait_for(lambda: k("/hookerr", "hook_errors") >= 1, 3),
       "hook error counted")

    # the text format, scrape after scrape (a name the first scrape
    # overwrote once put the close codes under another family's name)
    for i in range(1, SCRAPES + 1):
        scrape(i, total)

    # a real Prometheus scrapes it, several times
    prometheus(total)

    # the zone full: new keys count as "other", the old ones stay
    before = status()
    for i in range(FULL_KEYS):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/full?k=k%d"
                                   % (PORT, i), timeout=5 * vg.SLOW)
        except urllib.error.HTTPError:
            pass
    st = status()
    kept = [x for x in st if x.startswith("k") and x[1:].isdigit()]
    other = st["other"]["handshakes"]["bad_request"]
    ok(0 < len(kept) < FULL_KEYS and len(st) < FULL_KEYS,
       "the zone holds %d keys of %d new ones" % (len(kept), FULL_KEYS))
    other -= before["other"]["handshakes"]["bad_request"]
    ok(other == FULL_KEYS - len(kept),
       "the %d others count under \"other\"" % other)
    ok(st["/ws"]["sessions_total"] == total, "the older keys are kept")

    # a reload keeps the zone (same name and size) and its counters
    r = subprocess.run(nginx_cmd() + ["-s", "reload"], capture_output=True,
                       text=True)
    ok(r.returncode == 0, "nginx -s reload")
    ws, _ = await session("/ws", 1)
    await ws.close()
    ok(wait_for(lambda: k("/ws", "sessions_total") == total + 1
                and k("/ws", "sessions_open") == 0, 5),
       "after the reload the counters go on from %d" % total)


def scrape(i, total):
    """One scrape of the text format, checked on its own."""
    ctype, text = get("/status")
    with open(os.path.join(PREFIX, "status.%d.prom" % i), "w") as f:
        f.write(text)
    ok(ctype == "text/plain; version=0.0.4",
       "scrape %d: Content-Type: %s" % (i, ctype))
    ok('ws_proxy_sessions_total{key="/ws"} %d\n' % total in text
       and 'ws_proxy_closes_total{key="/ws",from="client",code="1000"} %d\n'
       % total in text,
       "scrape %d: ws_proxy_sessions_total and the client's 1000 closes "
       "of /ws" % i)
    helps = [l.split()[2] for l in text.splitlines()
             if l.startswith("# HELP ")]
    names = set(l.split("{")[0] for l in text.splitlines()
                if l and not l.startswith("#"))
    stray = [n for n in names
             if n not in helps and n.rsplit("_", 1)[0] not in helps]
    good = len(helps) == len(set(helps)) == FAMILIES and not stray \
        and "ws_proxy_closes_total" in helps \
        and "ws_proxy_closed_by_total" in helps
    ok(good, "scrape %d: %d families, one HELP each, every sample under its "
       "family%s" % (i, FAMILIES, "" if good else ": HELP %s, samples %s"
                     % (", ".join(helps), ", ".join(sorted(stray)))))
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    ok(r.returncode == 0, "scrape %d: promtool check metrics: %s"
       % (i, (r.stdout + r.stderr).strip().replace("\n", "; ")[:300]))


def prometheus(total):
    d = os.path.join(PREFIX, "prometheus")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    conf = os.path.join(d, "prometheus.yml")
    with open(conf, "w") as f:
        f.write(PROM_CONF % PORT)
    log = open(os.path.join(d, "prometheus.log"), "w")
    p = subprocess.Popen(["prometheus", "--config.file=" + conf,
                          "--storage.tsdb.path=" + os.path.join(d, "data"),
                          "--web.listen-address=127.0.0.1:%d" % PROM_PORT],
                         stdout=log, stderr=subprocess.STDOUT)

    def query(promql):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" \
              % (PROM_PORT, urllib.parse.quote(promql))
        with urllib.request.urlopen(url, timeout=2) as r:
            res = json.loads(r.read())["data"]["result"]
            return float(res[0]["value"][1]) if res else None

    def scraped():
        return (query('count_over_time(up{job="wsp"}[5m])') or 0) >= SCRAPES
    try:
        ok(wait_for(scraped, 30), "Prometheus scraped the status %d times"
           % SCRAPES)
        ok(query('min_over_time(up{job="wsp"}[5m])') == 1,
           "every scrape succeeded (up was 1 each time)")
        ok(query('sum(ws_proxy_sessions_total{key="/ws"})') == total,
           "sum(ws_proxy_sessions_total{key=\"/ws\"}) is %d" % total)
        ok(query('sum(ws_proxy_closes_total{key="/ws",from="client",'
                 'code="1000"})') == total,
           "ws_proxy_closes_total holds the client's %d closes 1000" % total)
        ok(query('count(ws_proxy_closed_by_total{code!=""})') is None
           and query('count(ws_proxy_closed_by_total{key="/ws"})') == 4,
           "ws_proxy_closed_by_total holds its 4 series, no close code")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def conf_errors():
    """nginx -t refuses a status page or a key without a zone, and a tiny
    zone."""
    for http, want in [
            ("server { listen 127.0.0.1:%d; location /s { ws_proxy_status; }"
             " }" % PORT, '"ws_proxy_status" needs a "ws_proxy_zone"'),
            ("server { listen 127.0.0.1:%d; location /ws {"
             " ws_proxy_zone_key $host; return 204; } }" % PORT,
             '"ws_proxy_zone_key" needs a "ws_proxy_zone"'),
            ("ws_proxy_zone z 16k;", 'zone "z" is too small'),
            ("ws_proxy_zone z 1m; ws_proxy_zone y 1m;", "is duplicate")]:
        r = master.conf_test(PREFIX, http)
        ok(r.returncode != 0 and want in r.stderr,
           "nginx -t refuses: %s" % want)


def run():
    for tool in ("promtool", "prometheus"):
        if not shutil.which(tool):
            print("1..0 # SKIP %s missing (Debian's prometheus package: "
                  "make deps)" % tool)
            sys.exit(0)
    logdir, log = master.prepare(PREFIX, CONF, root=ROOT, port=PORT,
                                 hang=HANG_PORT)
    conf_errors()
    _, status_ = master.serve(PREFIX, PORT, "metrics test", main, ok)
    master.no_alert(ok, log)
    vg.check(ok, logdir, status_)
    sys.exit(plan())


run()
