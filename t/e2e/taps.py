#!/usr/bin/python3
"""The tap (issue 25, item 3), across two workers (TAP).

nginx runs with a master process and two workers (reuseport spreads the
connections), the sessions through ws_proxy_pass to a Lua echo of the same
nginx, ws_proxy_tap_payloads 8 on them.  A tap is opened on a session until
one lands on the other worker than the session's: it receives the session's
frames in order, both ways, each with its header fields and its payload
cut to 8 bytes; 403 on a location without control, 404 for an unknown id,
429 for a fifth tap; a tap that never reads does not slow the session
(messages/s measured with and without it), and once it reads it is told
how many frames it lost; every tap ends with 1000 when its session ends.
"""

import asyncio
import json
import os
import socket
import sys
import time
import urllib.request

import websockets

import master
import target
import vg
from tap import ok, plan
from wscompat import headers

PREFIX = master.prefix("taps")
PORT = int(os.environ.get("TEST_NGINX_TAP_PORT", "20030"))
BASE = "ws://127.0.0.1:%d" % PORT

# a hook that upper-cases the client's text (the locations /zhook, /hook)
HOOK = """            content_by_lua_block {
                local p = assert(require("resty.websocket.proxy").new({
                    on_frame = function(p, role, typ, payload)
                        if typ == "text" and role == "client" then
                            return payload:upper()
                        end
                        return payload
                    end,
                }))
                assert(p:connect("ws://127.0.0.1:%(port)d/echo"))
                p:execute()
            }"""

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
    ws_proxy_zone wsp 2m;

    # the session's variables in the tap's log: a tap is no session
    log_format tapv '$request_uri $status c=$ws_proxy_client_frames '
                    'end=$ws_proxy_end by=$ws_proxy_closed_by';

    server {
        listen 127.0.0.1:%(port)d reuseport;

        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new({ max_payload_len = 65536 }))
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

        location = /status {
            ws_proxy_status control;
            add_header X-Worker $pid always;
            access_log logs/status.log tapv;
        }
        location = /ro { ws_proxy_status; }

        # compressed with the client, a hook that upper-cases its text
        location /zhook {
            ws_proxy_zone_key "zhook";
            ws_proxy_deflate client;
            ws_proxy_tap_payloads 64;
@HOOK@
        }

        # the same hook, uncompressed: a frame it forwards is held in place
        location /hook {
            ws_proxy_zone_key "hook";
            ws_proxy_tap_payloads 64;
@HOOK@
        }

        location /ws {
            ws_proxy_zone_key "tapped";
            ws_proxy_tap_payloads 8;
            ws_proxy_pass ws://127.0.0.1:%(port)d/echo;
        }
    }
}
""".replace("@HOOK@", HOOK)


def get(path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path),
                                timeout=5 * vg.SLOW) as r:
        return json.loads(r.read().decode())


def raw_upgrade(path):
    """A raw upgrade: (socket, status, headers) after the response head."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
               % path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
            for l in lines[1:] if ":" in l}
    return s, status, hdrs


def session_of(mark, key="tapped"):
    """The registry's entry of the session whose client port is mark."""
    for _ in range(50):
        j = get("/status?sessions&key=%s&limit=1000" % key)
        for s in j["sessions"]:
            if s["client"].endswith(":%d" % mark):
                return s
        time.sleep(0.1)
    return None


async def open_session():
    ws = await websockets.connect(BASE + "/ws", max_size=None)
    port = ws.transport.get_extra_info("sockname")[1]
    s = session_of(port)
    return ws, s


async def tap_on_other_worker(sid, worker):
    """A tap on sid held by another worker than `worker`: taps are opened
    and closed until reuseport gives one there (its 101 names it)."""
    for _ in range(40):
        try:
            t = await websockets.connect(BASE + "/status?tap=%s" % sid)
        except websockets.InvalidStatusCode:
            # 429: the slots of the taps closed are freed at the session's
            # worker's next tick (250 ms)
            await asyncio.sleep(0.3)
            continue
        w = headers(t, "response").get("X-Worker")
        if w and w != str(worker):
            return t
        await t.close()
        await asyncio.sleep(0.05)
    return None


async def frames(t, n, timeout=5):
    out = []
    try:
        while len(out) < n:
            m = await asyncio.wait_for(t.recv(), timeout * vg.SLOW)
            out.append(json.loads(m))
    except (asyncio.TimeoutError, websockets.ConnectionClosed):
        pass
    return out


async def rate(ws, n=3000, size=100):
    """Messages/s of n echoes, pipelined."""
    msg = "r" * size
    t0 = time.monotonic()

    async def send():
        for _ in range(n):
            await ws.send(msg)

    sender = asyncio.ensure_future(send())
    for _ in range(n):
        await ws.recv()
    await sender
    return n / (time.monotonic() - t0)


async def main():
    ws, s = await open_session()
    ok(s is not None and s["state"] == "open",
       "a session through the module, in the registry: %s" % (s and s["id"]))
    sid, worker = s["id"], s["worker"]

    # refusals
    _s, status, hdrs = raw_upgrade("/ro?tap=%s" % sid)
    _s.close()
    ok(status == 403, "a tap where control is not allowed: 403 (%d)" % status)
    _s, status, hdrs = raw_upgrade("/status?tap=1-1")
    _s.close()
    ok(status == 404, "a tap on an unknown id: 404 (%d)" % status)

    t = await tap_on_other_worker(sid, worker)
    ok(t is not None, "a tap held by the other worker than the session's "
       "(%s)" % worker)
    if t is None:
        return

    await asyncio.sleep(0.6)         # the session's worker attaches it
    sent = ["m%d-%s" % (i, "x" * (i * 3)) for i in range(5)]
    for m in sent:
        await ws.send(m)
        await ws.recv()
    got = await frames(t, 10)
    client = [f for f in got if f.get("from") == "client"]
    upstream = [f for f in got if f.get("from") == "upstream"]
    ok(len(client) == 5 and len(upstream) == 5,
       "the tap gets the 5 messages each way (%d, %d)"
       % (len(client), len(upstream)))
    ok([f.get("len") for f in client] == [len(m) for m in sent]
       and all(f["op"] == "text" and f["fin"] is True and f["rsv1"] is False
               and f["action"] == "forwarded" for f in client),
       "in order, with their opcode, length, FIN, RSV1 and action: %s"
       % client[:1])
    ok([f.get("payload") for f in client] == [m[:8] for m in sent]
       and [f.get("cut", False) for f in client]
       == [len(m) > 8 for m in sent],
       "payloads cut to ws_proxy_tap_payloads 8: %s"
       % [f.get("payload") for f in client])
    ok(all(isinstance(f.get("t"), float) for f in got)
       and sorted(f["t"] for f in client) == [f["t"] for f in client],
       "each with its time")

    # at most 4 taps
    extra = []
    for _ in range(3):
        extra.append(await websockets.connect(BASE + "/status?tap=%s" % sid))
    _s, status, _h = raw_upgrade("/status?tap=%s" % sid)
    _s.close()
    ok(status == 429, "a fifth tap: 429 (%d)" % status)
    j = get("/status?session=%s" % sid)
    ok(j.get("taps") == 4, "the session's entry counts 4 taps (%s)"
       % j.get("taps"))
    for e in extra:
        await e.close()
    await asyncio.sleep(0.6)

    # a tap that never reads does not slow the session: messages/s, the
    # best of 3 runs of 20,000 echoes each (enough frames to fill the
    # tap's ring and socket buffers), with no tap, then with a stalled one
    await rate(ws, 2000)
    base = max([await rate(ws, 20000) for _ in range(3)])
    stalled, status, _h = raw_upgrade("/status?tap=%s" % sid)
    await asyncio.sleep(0.6)
    slow = max([await rate(ws, 20000) for _ in range(3)])
    # a session that waited for its tap would stop once the ring and the
    # tap's socket are full (a few thousand frames): 0.4 keeps that apart
    # from the noise of a loaded machine (the CI runs five suites at once;
    # bench/ is where throughput is measured)
    ok(status == 101 and slow >= 0.4 * base,
       "a stalled tap does not slow the session: %.0f messages/s without, "
       "%.0f with" % (base, slow))
    print("# W-tap: %.0f msg/s without a tap, %.0f with a stalled one"
          % (base, slow))
    # it reads now: what it lost is counted
    stalled.settimeout(5 * vg.SLOW)
    data = b""
    deadline = time.monotonic() + 20 * vg.SLOW
    while b'"dropped"' not in data and time.monotonic() < deadline:
        try:
            chunk = stalled.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        if len(data) > 1 << 24:
            data = data[-4096:]
    i = data.find(b'{"dropped":')
    n = int(data[i + 11:data.index(b"}", i)]) if i >= 0 else 0
    ok(n > 0, "once it reads, the stalled tap is told it lost %d frames" % n)
    stalled.close()

    # the tap ends with the session
    await ws.close(1000, "bye")
    code = None
    try:
        while True:
            await asyncio.wait_for(t.recv(), 5 * vg.SLOW)
    except websockets.ConnectionClosed as e:
        code = e.code if hasattr(e, "code") else t.close_code
    except asyncio.TimeoutError:
        pass
    ok(code == 1000, "the tap ends with 1000 when its session ends (%s)"
       % code)
    await asyncio.sleep(0.6)
    j = get("/status?session=%s" % sid)
    ok(j.get("state") == "ended" and j.get("taps") == 0,
       "the ended session holds no tap (%s, %s)"
       % (j.get("state"), j.get("taps")))

    # a compressed session with a hook: the payloads after inflate, the
    # hook's rewrites as rewritten
    zs = await websockets.connect(BASE + "/zhook")
    z = session_of(zs.transport.get_extra_info("sockname")[1], "zhook")
    ok(z is not None and z["deflate"] and z["hook"],
       "a compressed session with a hook: %s" % (z and z["id"]))
    zt = await websockets.connect(BASE + "/status?tap=%s" % z["id"])
    await asyncio.sleep(0.6)
    await zs.send("hello compressed " * 8)
    echo = await zs.recv()
    got = await frames(zt, 2)
    c = next((f for f in got if f.get("from") == "client"), {})
    u = next((f for f in got if f.get("from") == "upstream"), {})
    ok(c.get("action") == "rewritten" and c.get("rsv1") is True
       and c.get("payload") == ("HELLO COMPRESSED " * 8)[:64]
       and c.get("cut") is True,
       "the client's compressed frame: rsv1, rewritten, its payload as the "
       "hook made it, inflated and cut to 64: %r" % c.get("payload"))
    ok(u.get("action") == "forwarded" and u.get("payload") == echo[:64],
       "the upstream's echo: forwarded, payload %r" % u.get("payload"))
    await zs.close()
    await zt.close()

    # uncompressed with a hook: a frame it forwards is masked again in
    # place after the verdict; the tap has it as it was
    hs = await websockets.connect(BASE + "/hook", compression=None)
    h = session_of(hs.transport.get_extra_info("sockname")[1], "hook")
    ht = await websockets.connect(BASE + "/status?tap=%s" % h["id"])
    await asyncio.sleep(0.6)
    blob = bytes(range(1, 41))
    await hs.send(blob)
    await hs.recv()
    got = await frames(ht, 2)
    c = next((f for f in got if f.get("from") == "client"), {})
    import base64
    ok(c.get("action") == "forwarded" and c.get("base64") is True
       and base64.b64decode(c.get("payload", "")) == blob,
       "a client's binary frame the hook forwarded: its payload unmasked, "
       "in base64 (%r)" % c.get("payload"))
    await hs.close()
    await ht.close()


def run():
    if target.LUA == "none":
        print("1..0 # SKIP the echo upstream is Lua (TEST_NGINX_LUA=none)")
        sys.exit(0)
    logdir, log = master.prepare(PREFIX, CONF, port=PORT)
    _, status_ = master.serve(PREFIX, PORT, "tap test", main, ok)

    slog = os.path.join(logdir, "status.log")
    lines = open(slog).read().splitlines() if os.path.exists(slog) else []
    taps = [l for l in lines if "?tap=" in l and " 101 " in l]
    ok(taps and all(l.endswith("c=- end=- by=-") for l in taps),
       "the session's variables are empty in a tap's access log line "
       "(%d lines: %s)" % (len(taps), taps[:1]))
    master.no_alert(ok, log)
    vg.check(ok, logdir, status_)
    sys.exit(plan())


run()
