#!/usr/bin/python3
"""permessage-deflate (RFC 7692) against peers this project did not write
(TAP): Python websockets (Debian 12's 10.4, Debian 13's 15) as the client
and as the upstream, each with its own ServerPerMessageDeflateFactory /
ClientPerMessageDeflateFactory parameters, and a raw socket client that compresses with Python's zlib.

For each case: what the client negotiated (its websocket.extensions and
the 101's Sec-WebSocket-Extensions), what the upstream was offered (the
Sec-WebSocket-Extensions of the module's request) and accepted, and that
every message comes back intact both ways (the upstream echoes).  The
module runs in its own nginx (a master and one worker)."""

import asyncio
import os
import random
import re
import socket
import struct
import sys
import time
import zlib

import websockets
from websockets.extensions import permessage_deflate as pmd
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory as CF,
    ServerPerMessageDeflateFactory as SF)

import target
import vg
from wscompat import extensions, headers
import master
from master import nginx_cmd
from tap import ok, plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SERVROOT = os.environ.get("TEST_NGINX_SERVROOT",
                          os.path.join(ROOT, "t", "servroot")).rstrip("/")
# beside the server root, not in it (see t/e2e/metrics.py)
PREFIX = SERVROOT + "-deflate"
PORT = int(os.environ.get("TEST_NGINX_DEFLATE_PORT", "20000"))
# the upstreams listen on UP, UP + 1, ... (one port per parameter set)
UP = int(os.environ.get("TEST_NGINX_DEFLATE_UPSTREAM_PORT", str(PORT + 1)))
T = 20 * vg.SLOW


class _Zlib8:
    """zlib refuses a raw deflate window of 8 bits (deflateInit2 takes 8
    only for the zlib wrapper), so websockets cannot compress with the
    8-bit window RFC 7692 allows.  Its compressor gets 9 instead: zlib's
    9-bit deflate keeps every match within 512 - 262 = 250 bytes, which an
    8-bit inflater reads, so the peer still keeps the 8-bit promise."""

    def __getattr__(self, name):
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level=-1, method=zlib.DEFLATED, wbits=15, *a, **kw):
        return zlib.compressobj(level, method, -9 if wbits == -8 else wbits,
                                *a, **kw)


pmd.zlib = _Zlib8()

CONF = """
%(load_modules)s
worker_processes 1;
daemon %(daemon)s;
master_process on;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    lua_package_path "%(lua_path)s";
    log_format wsd '$request_uri $status c=[$ws_proxy_client_deflate] '
                   'u=[$ws_proxy_upstream_deflate]';
    access_log logs/access.log wsd;
    ws_proxy_max_payload 4m;
    ws_proxy_zone deflate_metrics 1m;

    server {
        listen 127.0.0.1:%(port)d;

        # new()'s options from the query: d (on, off, client, upstream),
        # ct (on, off), wb, hook (upper, noop), agg, up (the upstream's
        # port), tag (the upstream request's path)
        location /lua {
            content_by_lua_block {
                local a = ngx.var
                local opts = {}
                local d = a.arg_d
                if d == "on" then
                    opts.deflate = true
                elseif d == "off" then
                    opts.deflate = false
                elseif d then
                    opts.deflate = d
                end
                if a.arg_ct then
                    opts.deflate_context_takeover = a.arg_ct == "on"
                end
                if a.arg_wb then
                    opts.deflate_window_bits = tonumber(a.arg_wb)
                end
                for _, side in ipairs({ "client", "upstream" }) do
                    local s = side:sub(1, 1)
                    if a["arg_" .. s .. "ct"] then
                        opts[side .. "_deflate_context_takeover"] =
                            a["arg_" .. s .. "ct"] == "on"
                    end
                    if a["arg_" .. s .. "wb"] then
                        opts[side .. "_deflate_window_bits"] =
                            tonumber(a["arg_" .. s .. "wb"])
                    end
                end
                if a.arg_hook == "upper" then
                    opts.on_frame = function(p, role, typ, payload)
                        if typ == "text" then
                            return payload:upper()
                        end
                        return payload
                    end
                elseif a.arg_hook == "noop" then
                    opts.on_frame = function(p, role, typ, payload)
                        return payload
                    end
                end
                if a.arg_agg then
                    opts.aggregate_fragments = true
                end
                if a.arg_lvl then
                    opts.deflate_level = tonumber(a.arg_lvl)
                end
                if a.arg_mem then
                    opts.deflate_mem_level = tonumber(a.arg_mem)
                end
                if a.arg_max then
                    opts.client_max_frame_size = tonumber(a.arg_max)
                    opts.upstream_max_frame_size = tonumber(a.arg_max)
                end
                %(connect)s
            }
        }

        # the directives, and new() without deflate options
        location /dir {
            ws_proxy_deflate on;
            content_by_lua_block { local opts = {} %(connect)s }
        }
        location /dirct {
            ws_proxy_deflate on;
            ws_proxy_deflate_context_takeover on;
            ws_proxy_deflate_window_bits 10;
            content_by_lua_block { local opts = {} %(connect)s }
        }
        location /dirc {
            ws_proxy_deflate client;
            content_by_lua_block { local opts = {} %(connect)s }
        }
        location /diru {
            ws_proxy_deflate upstream;
            content_by_lua_block { local opts = {} %(connect)s }
        }
        location /diroff {
            content_by_lua_block { local opts = {} %(connect)s }
        }
        # the option wins over the directive
        location /dirwin {
            ws_proxy_deflate on;
            content_by_lua_block {
                local opts = { deflate = false }
                %(connect)s
            }
        }

        location /status {
            ws_proxy_status;
        }

        # a side's own context takeover and window bits
        location /dirside {
            ws_proxy_deflate on;
            ws_proxy_upstream_deflate_context_takeover on;
            ws_proxy_client_deflate_window_bits 9;
            content_by_lua_block {
                local opts = {}
                %(connect)s
            }
        }

        location /pass {
            ws_proxy_deflate on;
            ws_proxy_pass ws://127.0.0.1:%(up_default)d/pass;
        }
        location /passct {
            ws_proxy_deflate on;
            ws_proxy_deflate_context_takeover on;
            ws_proxy_deflate_window_bits 12;
            ws_proxy_pass ws://127.0.0.1:%(up_default)d/passct;
        }
    }
}
"""

CONNECT = r"""
                local p = assert(require("resty.websocket.proxy").new(opts))
                local tag = ngx.var.arg_tag or ""
                local ok, err = p:connect("ws://127.0.0.1:"
                                          .. ngx.var.arg_up .. "/" .. tag)
                if not ok then
                    ngx.log(ngx.ERR, "connect: ", err)
                    return ngx.exit(502)
                end
                p:execute()
                local st = p:stats() or {}
                ngx.log(ngx.INFO, "stats ", tag, ": cc=",
                        tostring(st.client_compressed_bytes), " cu=",
                        tostring(st.client_uncompressed_bytes), " uc=",
                        tostring(st.upstream_compressed_bytes), " uu=",
                        tostring(st.upstream_uncompressed_bytes), ".")
"""

# the upstreams: name -> server factory (None: no deflate)
UPSTREAMS = [("none", None), ("default", SF())]
UPSTREAMS += [("snct", SF(server_no_context_takeover=True)),
              ("cnct", SF(client_no_context_takeover=True)),
              ("nct", SF(server_no_context_takeover=True,
                         client_no_context_takeover=True))]
UPSTREAMS += [("smwb%d" % n, SF(server_max_window_bits=n))
              for n in range(8, 16)]
UPSTREAMS += [("cmwb%d" % n, SF(client_max_window_bits=n))
              for n in range(8, 16)]
UPSTREAMS += [("mix", SF(server_no_context_takeover=True,
                         client_no_context_takeover=True,
                         server_max_window_bits=9,
                         client_max_window_bits=11,
                         require_client_max_window_bits=True))]
UPORT = {name: UP + i for i, (name, _) in enumerate(UPSTREAMS)}

# what each upstream saw: tag (its request path) -> dict
VIEWS = {}


async def upstream_handler(ws):
    # ws.path in 10.4, ws.request.path in the asyncio API
    path = ws.path if hasattr(ws, "path") else ws.request.path
    VIEWS[path.lstrip("/")] = {
        "req": headers(ws, "request").get_all("Sec-WebSocket-Extensions"),
        "resp": headers(ws, "response").get("Sec-WebSocket-Extensions"),
        "ext": extensions(ws),
    }
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


def parse_ext(values):
    """Sec-WebSocket-Extensions lines -> [(name, {param: value|True})]."""
    out = []
    for v in values:
        for offer in v.split(","):
            parts = [x.strip() for x in offer.split(";")]
            if not parts[0]:
                continue
            params = {}
            for x in parts[1:]:
                k, _, val = x.partition("=")
                params[k.strip()] = val.strip().strip('"') if _ else True
            out.append((parts[0], params))
    return out


# ---- messages ---------------------------------------------------------

RNG = random.Random(7692)
SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]
WORDS = ("the quick brown fox jumps over the lazy dog while the proxy "
         "compresses json {\"id\": 42, \"price\": 1.25} ").split(" ")


def compressible_text(n, seed=0):
    r = random.Random(seed)
    s = []
    k = 0
    while k < n:
        w = r.choice(WORDS) + " "
        s.append(w)
        k += len(w)
    return "".join(s)[:n]


def random_text(n):
    return "".join(RNG.choice("abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
                   for _ in range(n))


def messages(sizes=SIZES):
    out = []
    for n in sizes:
        out.append(compressible_text(n, n))
        out.append(random_text(n))
        out.append(compressible_text(n, n + 1).encode())
        out.append(RNG.randbytes(n))
    return out


async def batch(coros, n=6):
    """Runs the sessions n at a time: nginx and the peers then work at
    once instead of in turn (each session checks only its own results)."""
    coros = list(coros)
    for i in range(0, len(coros), n):
        await asyncio.gather(*coros[i:i + n])


FULL = messages()
SMALL = messages([0, 1, 126, 3000, 70000])


def describe(m):
    return "%s %d" % ("text" if isinstance(m, str) else "binary", len(m))


async def session(path, ext, msgs, fragments=None):
    """Connects with the client extensions ext (a list), sends msgs one by
    one and reads each echo.  Returns (client extensions, 101 header value,
    list of bad messages, error)."""
    uri = "ws://127.0.0.1:%d%s" % (PORT, path)
    bad = []
    try:
        async with websockets.connect(uri, extensions=ext, compression=None,
                                      max_size=None, open_timeout=T,
                                      close_timeout=T) as ws:
            for m in msgs:
                if fragments:
                    k = max(1, len(m) // fragments)
                    await ws.send([m[i:i + k]
                                   for i in range(0, len(m), k)] or [m])
                else:
                    await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), T)
                want = m.upper() if isinstance(m, str) and "hook=upper" \
                    in path else m
                if got != want:
                    bad.append(describe(m))
            return (extensions(ws),
                    headers(ws, "response").get_all(
                        "Sec-WebSocket-Extensions"),
                    bad, None)
    except Exception as e:
        return None, None, bad, repr(e)


def lua(up, tag, **q):
    s = "/lua?up=%d&tag=%s" % (UPORT[up], tag)
    for k, v in q.items():
        s += "&%s=%s" % (k, v)
    return s


def intact(name, res, n):
    ext, hdr, bad, err = res
    return ok(err is None and not bad,
              "%s: %d messages intact both ways%s%s"
              % (name, n, " (bad: %s)" % ", ".join(bad[:6]) if bad else "",
                 " (%s)" % err if err else ""))


def client_view_ok(ext, hdr, offer, mod):
    """What the module answered a websockets client that offered `offer`
    (a ClientPerMessageDeflateFactory or None), with the module's
    settings mod (d, ct, wb): "" when right, else what is wrong."""
    d = mod.get("d", "on")
    ct = mod.get("ct", "off") == "on"
    # zlib has no raw deflate of 8 bits: the module's 8 is 9
    wb = max(int(mod.get("wb", 15)), 9)
    if offer is None or d in ("off", "upstream"):
        if ext or hdr:
            return "negotiated %r without an offer or with deflate %s" % (
                hdr, d)
        return ""
    if offer.server_max_window_bits == 8:
        # the module cannot deflate within 8 bits: it declines the offer
        return "accepted server_max_window_bits=8 (%r)" % hdr if ext else ""
    if not ext:
        # declining is allowed only where the module cannot bound the
        # client's window (no client_max_window_bits offered)
        if wb < 15 and not offer.client_max_window_bits:
            return ""
        return "no permessage-deflate in the 101 (%r)" % hdr
    e = ext[0]
    answer = parse_ext(hdr)
    if len(answer) != 1 or answer[0][0] != "permessage-deflate":
        return "the 101's Sec-WebSocket-Extensions: %r" % hdr
    params = answer[0][1]
    if "client_max_window_bits" in params and \
            not offer.client_max_window_bits:
        return "client_max_window_bits answered, not offered (%r)" % hdr
    if offer.server_no_context_takeover and not e.remote_no_context_takeover:
        return "server_no_context_takeover offered, not answered"
    if not ct and not (e.remote_no_context_takeover
                       and e.local_no_context_takeover):
        return "context takeover off, yet %r" % hdr
    if ct and not offer.server_no_context_takeover \
            and e.remote_no_context_takeover:
        return "context takeover on, yet the module dropped its own " \
               "(%r)" % hdr
    # the module need not announce its own smaller window when the client
    # did not ask (RFC 7692 7.1.2.1: "MAY"); it deflates within it anyway
    smwb = offer.server_max_window_bits
    if smwb and e.remote_max_window_bits > min(smwb, wb):
        return "server window %d > min(offer %d, window_bits %d)" % (
            e.remote_max_window_bits, smwb, wb)
    if offer.server_max_window_bits and \
            "server_max_window_bits" not in params:
        return "server_max_window_bits offered, not answered"
    if offer.client_max_window_bits and e.local_max_window_bits > wb:
        return "client window %d > window_bits %d" % (
            e.local_max_window_bits, wb)
    return ""


def upstream_view_ok(view, mod, up):
    """The module's offer to the upstream and what the upstream took."""
    d = mod.get("d", "on")
    ct = mod.get("ct", "off") == "on"
    wb = max(int(mod.get("wb", 15)), 9)
    if view is None:
        return "the upstream saw no request"
    offers = parse_ext(view["req"])
    if d in ("off", "client"):
        return "offered %r with deflate %s" % (view["req"], d) if offers \
            else ""
    if len(offers) != 1 or offers[0][0] != "permessage-deflate":
        return "the offer: %r" % view["req"]
    p = offers[0][1]
    if "client_max_window_bits" not in p:
        return "no client_max_window_bits in %r" % view["req"]
    if p["client_max_window_bits"] is not True and \
            int(p["client_max_window_bits"]) > wb:
        return "client_max_window_bits > %d in %r" % (wb, view["req"])
    if wb < 15 and p["client_max_window_bits"] != str(wb):
        return "client_max_window_bits is not %d in %r" % (wb, view["req"])
    nct = "server_no_context_takeover" in p and \
        "client_no_context_takeover" in p
    if nct == ct:
        return "context takeover %s, yet the offer is %r" % (
            "on" if ct else "off", view["req"])
    if wb < 15 and p.get("server_max_window_bits") != str(wb):
        return "server_max_window_bits is not %d in %r" % (wb, view["req"])
    if wb == 15 and "server_max_window_bits" in p:
        return "server_max_window_bits with window_bits 15: %r" % (
            view["req"])
    if set(p) - {"client_max_window_bits", "server_max_window_bits",
                 "server_no_context_takeover",
                 "client_no_context_takeover"}:
        return "unknown parameters in %r" % view["req"]
    if dict(UPSTREAMS)[up] is not None and not view["ext"]:
        return "the upstream accepted nothing (%r)" % view["resp"]
    return ""


async def case(name, path_kw, offer, up, msgs, tag, fragments=None,
               path=None):
    """One session: negotiation on both sides, then the messages."""
    mod = dict(path_kw)
    p = path or lua(up, tag, **path_kw)
    res = await session(p, [offer] if offer else [], msgs, fragments)
    ext, hdr, bad, err = res
    if err is None:
        why = client_view_ok(ext, hdr, offer, mod)
        why2 = upstream_view_ok(VIEWS.get(tag), mod, up)
        ok(not why and not why2, "%s: negotiated %r / upstream %r%s"
           % (name, hdr, (VIEWS.get(tag) or {}).get("resp"),
              (" -- " + why if why else "") + (" -- " + why2 if why2
                                               else "")))
    intact(name, res, len(msgs))
    return res


# ---- the raw client: fragments with pings between them -------------------

def recv_exact(s, k):
    b = b""
    while len(b) < k:
        c = s.recv(k - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), k))
        b += c
    return b


def wframe(fin, rsv1, op, payload):
    key = os.urandom(4)
    h = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | op])
    n = len(payload)
    if n < 126:
        h += bytes([0x80 | n])
    elif n < 65536:
        h += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        h += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mk = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return h + key + mk


def rframe(s):
    b1, b2 = recv_exact(s, 2)
    n = b2 & 0x7f
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    return b1 >> 7, (b1 >> 6) & 1, b1 & 0x0f, recv_exact(s, n)


def raw_fragments(path, text, npieces):
    """A compressed text message in npieces frames, a ping after each but
    the last; returns (101 extensions, pongs, the echo inflated)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=T)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Extensions: permessage-deflate; "
              b"server_no_context_takeover; client_no_context_takeover\r\n"
              b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            break
        head += c
    m = re.search(rb"(?im)^sec-websocket-extensions:\s*(.*?)\r$", head)
    answer = m.group(1).decode() if m else ""
    c = zlib.compressobj(wbits=-15)
    data = c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]
    k = max(1, len(data) // npieces)
    parts = [data[i * k:(i + 1) * k] for i in range(npieces - 1)]
    parts.append(data[(npieces - 1) * k:])
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        s.sendall(wframe(last, i == 0, 1 if i == 0 else 0, part))
        if not last:
            s.sendall(wframe(True, False, 9, b"p%d" % i))
    pongs = []
    payload = b""
    rsv = None
    while True:
        fin, rsv1, op, p = rframe(s)
        if op == 10:
            pongs.append(p)
            continue
        if op in (1, 2, 0):
            if op != 0:
                rsv = rsv1
            payload += p
            if fin:
                break
            continue
        break
    if rsv:
        d = zlib.decompressobj(wbits=-15)
        payload = d.decompress(payload + b"\x00\x00\xff\xff")
    s.sendall(wframe(True, False, 8, struct.pack(">H", 1000)))
    try:
        rframe(s)
    except (OSError, EOFError):
        pass
    s.close()
    return answer, pongs, payload.decode("utf-8", "replace"), rsv


# ---- the cases ----------------------------------------------------------

async def cases():
    # the four ends of the matrix, with every size and kind
    await case("both compress", {"d": "on"}, CF(), "default", FULL, "both")
    await case("only the client compresses", {"d": "on"}, CF(), "none",
               FULL, "conly")
    await case("only the upstream compresses", {"d": "on"}, None, "default",
               FULL, "uonly")
    await case("neither compresses (deflate on)", {"d": "on"}, None, "none",
               SMALL, "neither")
    await case("deflate = false: both offer, nothing negotiated",
               {"d": "off"}, CF(), "default", SMALL, "off")
    await case('deflate = "client"', {"d": "client"}, CF(), "default",
               FULL, "sidec")
    await case('deflate = "upstream"', {"d": "upstream"}, CF(), "default",
               FULL, "sideu")
    await case("both compress, a hook (inflate and deflate on both sides)",
               {"d": "on", "hook": "noop"}, CF(), "default", FULL,
               "bothhook")

    # every client offer the RFC allows, against the default module
    offers = []
    for snct in (False, True):
        for cnct in (False, True):
            for smwb in [None] + list(range(8, 16)):
                for cmwb in [None, True] + list(range(8, 16)):
                    offer = CF(server_no_context_takeover=snct,
                               client_no_context_takeover=cnct,
                               server_max_window_bits=smwb,
                               client_max_window_bits=cmwb)
                    tag = "c%d%d%s%s" % (snct, cnct, smwb, cmwb)
                    offers.append(case(
                        "client offer snct=%d cnct=%d smwb=%s cmwb=%s"
                        % (snct, cnct, smwb, cmwb),
                        {"d": "on", "hook": "noop"} if cnct
                        else {"d": "on"}, offer, "default", SMALL, tag))
    await batch(offers)

    # the module's window bits and context takeover, against several
    # client offers, through a hook and without one
    mods = []
    for ct in ("off", "on"):
        for wb in range(8, 16):
            for i, offer in enumerate([
                    CF(), CF(client_max_window_bits=True),
                    CF(server_max_window_bits=12,
                       client_max_window_bits=9),
                    CF(server_no_context_takeover=True,
                       client_no_context_takeover=True)]):
                for hook in (None, "noop"):
                    kw = {"d": "on", "ct": ct, "wb": wb}
                    if hook:
                        kw["hook"] = hook
                    tag = "m%s%d%d%s" % (ct, wb, i, hook or "")
                    mods.append(case("ct %s, window_bits %d, offer %d%s"
                                     % (ct, wb, i, ", hook" if hook else ""),
                                     kw, offer, "default", SMALL, tag))
    await batch(mods)

    # every upstream parameter set, with the module's context takeover
    # and window bits
    ups = []
    for up, _ in UPSTREAMS:
        if up == "cmwb8":
            continue            # below: refused
        for kw in ({"d": "on"}, {"d": "on", "ct": "on"},
                   {"d": "on", "wb": 9}, {"d": "on", "ct": "on", "wb": 12},
                   {"d": "on", "hook": "noop"}):
            tag = "u%s%s" % (up, "".join("%s%s" % x for x in kw.items()))
            ups.append(case("upstream %s, module %r" % (up, kw), kw, CF(),
                            up, SMALL, tag))
    await batch(ups)

    # an upstream that answers client_max_window_bits=8: zlib cannot
    # deflate with 8 bits, so the module refuses the answer (502)
    for kw in ({"d": "on"}, {"d": "on", "wb": 8}):
        res = await session(lua("cmwb8", "cmwb8", **kw), [CF()], SMALL[:1])
        ok(res[3] is not None and "502" in str(res[3]),
           "upstream cmwb8, module %r: 502 (%s)" % (kw, res[3]))

    # context takeover kept on every side over 50 similar messages
    fifty = [compressible_text(2000, i % 3) + " #%d" % i for i in range(50)]
    for hook in (None, "noop"):
        for up in ("default", "cnct", "snct"):
            kw = {"d": "on", "ct": "on"}
            if hook:
                kw["hook"] = hook
            await case("context takeover over 50 messages, upstream %s%s"
                       % (up, ", hook" if hook else ""), kw, CF(), up,
                       fifty, "ct50%s%s" % (up, hook or ""))
    await case("context takeover over 50 messages, client 10 bits, "
               "upstream 9 bits", {"d": "on", "ct": "on"},
               CF(client_max_window_bits=10, server_max_window_bits=11),
               "smwb9", fifty, "ct50w")

    # fragmented compressed messages (websockets sends an iterator as
    # fragments), with and without aggregate_fragments
    big = [compressible_text(200000, 5), random_text(100000),
           compressible_text(100000, 6).encode(), RNG.randbytes(50000)]
    for kw in ({"d": "on"}, {"d": "on", "agg": 1},
               {"d": "on", "hook": "noop"},
               {"d": "on", "hook": "noop", "agg": 1}):
        for up in ("default", "none"):
            tag = "frag%s%s" % (up, "".join("%s%s" % x for x in kw.items()))
            await case("fragmented messages, upstream %s, %r" % (up, kw),
                       kw, CF(), up, big, tag, fragments=7)

    # the raw client: pings between the fragments of a compressed message
    text = compressible_text(30000, 9)
    for kw in ({"d": "on"}, {"d": "on", "agg": 1},
               {"d": "on", "hook": "upper"},
               {"d": "on", "hook": "upper", "agg": 1}):
        for up in ("default", "none"):
            tag = "raw%s%s" % (up, "".join("%s%s" % x for x in kw.items()))
            try:
                answer, pongs, echo, rsv = await asyncio.to_thread(
                    raw_fragments, lua(up, tag, **kw), text, 4)
            except Exception as e:
                ok(False, "raw fragments %s %r: %r" % (up, kw, e))
                continue
            want = text.upper() if kw.get("hook") else text
            ok(answer.startswith("permessage-deflate") and rsv == 1
               and echo == want
               and sorted(pongs) == [b"p0", b"p1", b"p2"],
               "raw client, 4 compressed fragments with pings between, "
               "upstream %s, %r: pongs %r, echo %s (%d bytes, rsv1 %r)"
               % (up, kw, pongs, "intact" if echo == want else "WRONG",
                  len(echo), rsv))

    # a hook that upper-cases text on compressed traffic
    hooked = [compressible_text(n, n) for n in (0, 1, 125, 126, 65536)]
    hooked += [compressible_text(1000, 1).encode()]
    for up in ("default", "none", "nct"):
        await case("hook upper-cases compressed text, upstream %s" % up,
                   {"d": "on", "hook": "upper"}, CF(), up, hooked,
                   "upper%s" % up)
    await case("hook upper-cases, fragmented, aggregated",
               {"d": "on", "hook": "upper", "agg": 1}, CF(), "default",
               hooked, "upperagg", fragments=3)

    # the directives; ws_proxy_pass
    for loc, kw in (("dir", {"d": "on"}),
                    ("dirct", {"d": "on", "ct": "on", "wb": 10}),
                    ("dirc", {"d": "client"}), ("diru", {"d": "upstream"}),
                    ("diroff", {"d": "off"}), ("dirwin", {"d": "off"})):
        tag = "D" + loc
        await case("directive location /%s" % loc, kw, CF(), "default",
                   SMALL, tag,
                   path="/%s?up=%d&tag=%s" % (loc, UPORT["default"], tag))
    await case("ws_proxy_pass with ws_proxy_deflate on", {"d": "on"}, CF(),
               "default", FULL, "pass", path="/pass")
    await case("ws_proxy_pass, context takeover on, window_bits 12",
               {"d": "on", "ct": "on", "wb": 12}, CF(), "default", SMALL,
               "passct", path="/passct")

    # deflate_level and deflate_mem_level, through a hook (the module
    # deflates towards both)
    for lvl, mem in ((0, 8), (9, 9), (1, 1), (6, 4)):
        await case("deflate_level %d, deflate_mem_level %d" % (lvl, mem),
                   {"d": "on", "hook": "noop", "lvl": lvl, "mem": mem},
                   CF(), "default", FULL, "lvl%d%d" % (lvl, mem))

    # a frame size limit counts uncompressed bytes, even where both ends
    # compress alike (no pass-through then)
    for up in ("default", "none"):
        tag = "max%s" % up
        uri = "ws://127.0.0.1:%d%s" % (PORT, lua(up, tag, d="on", max=1000))
        code = None
        got = None
        t0 = time.time()
        try:
            async with websockets.connect(uri, extensions=[CF()],
                                          compression=None,
                                          open_timeout=T) as ws:
                await ws.send("a" * 1000)
                got = await asyncio.wait_for(ws.recv(), T)
                t0 = time.time()
                await ws.send("a" * 1001)
                await asyncio.wait_for(ws.recv(), T)
        except websockets.ConnectionClosed as e:
            code = e.code
        except Exception as e:
            code = repr(e)
        took = time.time() - t0
        ok(got == "a" * 1000 and code == 1009,
           "max_frame_size 1000, upstream %s: 1000 compressible bytes pass, "
           "1001 are 1009 (%r, %r)" % (up, got and len(got), code))
        # the limit stops the inflate inside the frame: the rest of it is
        # skipped, and the client's close reply ends the session at once
        # (not at ws_proxy_close_timeout, 5 s)
        ok(took < 2 * vg.SLOW, "max_frame_size 1000, upstream %s: the close "
           "handshake ends at once (%.2f s)" % (up, took))

    # each connection's own context takeover and window bits: new()'s
    # side options, then the side directives
    for name, path, want_c, want_u in (
            ("new({ client_deflate_context_takeover = true, "
             "upstream_deflate_window_bits = 10 })",
             lua("default", "sideopt", d="on", cct="on", uwb=10),
             lambda c: "no_context_takeover" not in c,
             lambda u: "client_max_window_bits=10" in u
             and "server_max_window_bits=10" in u
             and "server_no_context_takeover" in u),
            ("ws_proxy_upstream_deflate_context_takeover on, "
             "ws_proxy_client_deflate_window_bits 9",
             "/dirside?up=%d&tag=sidedir" % UPORT["default"],
             lambda c: "client_no_context_takeover" in c
             and "client_max_window_bits=9" in c,
             lambda u: "no_context_takeover" not in u
             and "=" not in u)):
        res = await session(path, [CF()], SMALL)
        tag = re.search(r"tag=(\w+)", path).group(1)
        client = ", ".join(res[1] or [])
        up = ", ".join((VIEWS.get(tag) or {}).get("req") or [])
        ok(res[3] is None and not res[2] and client and up
           and want_c(client) and want_u(up),
           "%s: the client's answer %r, the upstream's offer %r (%r)"
           % (name, client, up, res[3]))

    # stats(): one session whose bytes are known
    known = [compressible_text(10000, i) for i in range(5)]
    await case("stats session (hook)", {"d": "on", "hook": "noop"}, CF(),
               "default", known, "stats")
    await case("stats session (passthrough)", {"d": "on"}, CF(),
               "default", known, "statspass")
    await case("stats session (only the client compresses)", {"d": "on"},
               CF(), "none", known, "statsc")
    return sum(len(m) for m in known)


def log(name):
    p = os.path.join(PREFIX, "logs", name)
    return open(p).read() if os.path.exists(p) else ""


def check_metrics():
    """The zone's deflate counters: what the sessions inflated and
    deflated, by sender, in the Prometheus text of ws_proxy_status."""
    import urllib.request
    time.sleep(1.2 * vg.PAUSE)
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/status" % PORT,
                                      timeout=10 * vg.PAUSE).read().decode()
    except Exception as e:
        ok(False, "ws_proxy_status answers: %r" % e)
        return
    for metric in ("uncompressed", "compressed"):
        for sender in ("client", "upstream"):
            n = sum(int(v) for v in re.findall(
                r'^ws_proxy_deflate_%s_bytes_total\{[^}]*from="%s"[^}]*\} '
                r'(\d+)$' % (metric, sender), text, re.M))
            ok(n > 0, "metrics: ws_proxy_deflate_%s_bytes_total from %s "
               "counted (%d)" % (metric, sender, n))


def check_logs(known):
    time.sleep(0.3 * vg.PAUSE)
    acc = log("access.log")
    for tag, c, u in (("both", True, True), ("neither", False, False),
                      ("conly", True, False), ("uonly", False, True),
                      ("sidec", True, False), ("sideu", False, True),
                      ("off", False, False)):
        m = re.search(r"tag=%s(?:&\S*)? 101 c=\[(.*?)\] u=\[(.*?)\]$" % tag,
                      acc, re.M)
        good = m and (m.group(1).startswith("permessage-deflate") == c) \
            and (m.group(1) == "" or c) \
            and (m.group(2).startswith("permessage-deflate") == u) \
            and (m.group(2) == "" or u)
        ok(good, "access log, session %s: $ws_proxy_client_deflate and "
           "$ws_proxy_upstream_deflate (%s)" % (tag, m and m.group(0)))
    m = re.search(r"^/pass 101 c=\[(.*?)\] u=\[(.*?)\]$", acc, re.M)
    ok(m and m.group(1).startswith("permessage-deflate")
       and m.group(2).startswith("permessage-deflate"),
       "access log, ws_proxy_pass: both variables (%s)"
       % (m and m.group(0)))

    err = log("error.log")
    m = re.search(r"stats stats: cc=(\w+) cu=(\w+) uc=(\w+) uu=(\w+)\.",
                  err)
    nums = [int(x) if x.isdigit() else None for x in m.groups()] if m \
        else None
    # inflated on one wire and deflated on the other: counted on both
    ok(nums and nums[1] == 2 * known and nums[3] == 2 * known
       and 0 < nums[0] < known * 2 / 3 and 0 < nums[2] < known * 2 / 3,
       "stats() with a hook (inflated, then deflated): uncompressed bytes "
       "= 2 x %d each way, compressed less than a third (%r)"
       % (known, nums))
    for tag, passes in (("both", True), ("bothhook", False),
                        ("fragdefaultdon", True), ("fragdefaultdonagg1", False),
                        ("conly", False)):
        m = re.search(r"stats %s: cc=(\w+) cu=(\w+) uc=(\w+) uu=(\w+)\."
                      % tag, err)
        nums = [int(x) if x.isdigit() else None for x in m.groups()] \
            if m else None
        ok(nums and nums[0] > 0 and nums[2] > 0
           and (nums[1] == 0 and nums[3] == 0) == passes,
           "session %s: compressed frames %s (stats %r)"
           % (tag, "pass through untouched" if passes
              else "are inflated", nums))
    m = re.search(r"stats statsc: cc=(\w+) cu=(\w+) uc=(\w+) uu=(\w+)\.",
                  err)
    nums = [int(x) if x.isdigit() else None for x in m.groups()] if m \
        else None
    ok(nums and nums[1] == known and nums[3] == known
       and 0 < nums[0] < known / 3 and 0 < nums[2] < known / 3,
       "stats() with only the client compressing: the client's messages "
       "inflated, the upstream's deflated, %d bytes each (%r)"
       % (known, nums))
    m = re.search(r"stats statspass: cc=(\w+) cu=(\w+) uc=(\w+) uu=(\w+)\.",
                  err)
    nums = [int(x) if x.isdigit() else None for x in m.groups()] if m \
        else None
    ok(nums and 0 < nums[0] < known / 3 and 0 < nums[2] < known / 3
       and nums[1] == 0 and nums[3] == 0,
       "stats() passing compressed frames through: compressed bytes only "
       "(%r)" % (nums,))


async def main():
    servers = []
    for name, factory in UPSTREAMS:
        servers.append(await websockets.serve(
            upstream_handler, "127.0.0.1", UPORT[name],
            extensions=[factory] if factory else [], compression=None,
            max_size=None))
    try:
        return await cases()
    finally:
        for s in servers:
            s.close()


def run():
    import shutil
    shutil.rmtree(PREFIX, ignore_errors=True)
    logdir = os.path.join(PREFIX, "logs")
    os.makedirs(logdir)
    with open(os.path.join(PREFIX, "nginx.conf"), "w") as f:
        f.write(CONF % {**target.CONF, "root": ROOT, "port": PORT,
                        "up_default": UPORT["default"],
                        "connect": CONNECT,
                        "daemon": "off" if vg.USE else "on"})
    status = None
    known = None
    try:
        proc = vg.start(nginx_cmd(PREFIX), logdir, PORT)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
    else:
        try:
            known = asyncio.run(main())
            check_metrics()
        except Exception as e:
            ok(False, "deflate sessions: %r" % e)
        finally:
            master.stop(PREFIX)
            status = vg.wait(proc)
    if known:
        check_logs(known)
    text = log("error.log")
    ok("[alert]" not in text and "[crit]" not in text
       and "[emerg]" not in text, "no [alert], [crit] or [emerg]")
    vg.check(ok, logdir, status)
    sys.exit(plan())


run()
