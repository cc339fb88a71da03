#!/usr/bin/python3
"""Peers that reset their connection (TCP RST), between frames and in the
middle of one, on either side, and peers that half-close it (shutdown of
the write side) after their close frame (TAP).  Python sockets can send a real RST
(SO_LINGER 0), which cosockets cannot.  The proxy must drop or close the
other side as docs/design.md says, log no [alert]/[crit], and stay up."""

import base64
import hashlib
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

import master
import target
import vg
from tap import ok, plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = target.prefix("resets")
PORT = int(os.environ.get("TEST_NGINX_RESETS_PORT", "19970"))
UP = PORT + 1
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONF = """
%(load_modules)s
daemon %(daemon)s;
master_process off;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    lua_package_path "%(lua_path)s";
    server {
        listen 127.0.0.1:%(port)d;
        location /ws {
            content_by_lua_block {
                local hook = ngx.var.arg_hook == "1"
                local p = assert(require("resty.websocket.proxy").new({
                    aggregate_fragments = ngx.var.arg_agg == "1",
                    on_frame = hook and function(_, _, _, payload)
                        return payload
                    end or nil,
                }))
                assert(p:connect("ws://127.0.0.1:%(up)d/"))
                local ok, err = p:execute()
                ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            }
        }
    }
}
"""

def rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def recv_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def frame(opcode, payload, mask=True, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


class Upstream(threading.Thread):
    """Accepts one connection, completes the handshake, then does `act`."""

    def __init__(self, act):
        super().__init__(daemon=True)
        self.act = act
        self.got = b""
        self.closed = None
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", UP))
        self.srv.listen(1)

    def run(self):
        c, _ = self.srv.accept()
        req = recv_until(c, b"\r\n\r\n")
        key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                  b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                  + accept + b"\r\n\r\n")
        self.act(self, c)
        self.srv.close()


def client(path=b"/ws"):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = recv_until(s, b"\r\n\r\n")
    # bytes after the head are frames already: keep them for read_all()
    head, _, rest = head.partition(b"\r\n\r\n")
    PENDING[s.fileno()] = rest
    return s, head + b"\r\n\r\n"


PENDING = {}


def read_all(sock):
    data = PENDING.pop(sock.fileno(), b"")
    sock.settimeout(5 * vg.SLOW)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "closed"
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"


def log():
    with open(os.path.join(PREFIX, "logs", "error.log")) as f:
        return f.read()


def case_client_rst_mid_frame():
    def act(up, c):
        up.got, up.closed = read_all(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    big = frame(2, b"x" * 1000)
    s.sendall(big[:400])             # header and part of the payload
    time.sleep(0.3 * vg.PAUSE)
    rst(s)
    up.join(6 * vg.SLOW)
    ok(head.startswith(b"HTTP/1.1 101"), "client reset mid-frame: handshake")
    ok(up.closed in ("closed", "reset") and b"\x88" not in up.got[400:],
       "client reset mid-frame: the upstream is dropped, no close frame "
       "after half a frame (%s, %d bytes)" % (up.closed, len(up.got)))


def case_client_rst_between_frames():
    def act(up, c):
        up.got, up.closed = read_all(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    s.sendall(frame(1, b"whole"))
    time.sleep(0.3 * vg.PAUSE)
    rst(s)
    up.join(6 * vg.SLOW)
    # the upstream sees the text frame, then a close frame with 1001
    ok(b"whole" in up.got or len(up.got) > 0,
       "client reset between frames: the frame before it was delivered")
    # the last frame: a masked close with a 2-byte status
    i = up.got.rfind(b"\x88\x82")
    code = None
    if i >= 0 and len(up.got) >= i + 8:
        key = up.got[i + 2:i + 6]
        code = ((up.got[i + 6] ^ key[0]) << 8) | (up.got[i + 7] ^ key[1])
    ok(code == 1001,
       "client reset between frames: the upstream gets 1001 (%s)" % code)


def case_upstream_rst_mid_frame():
    def act(up, c):
        c.sendall(frame(2, b"y" * 1000, mask=False)[:300])
        time.sleep(0.3 * vg.PAUSE)
        rst(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    data, how = read_all(s)
    up.join(6 * vg.SLOW)
    ok(how in ("closed", "reset") and len(data) <= 300,
       "upstream reset mid-frame: the client is dropped after the part "
       "it had (%s, %d bytes)" % (how, len(data)))


def case_upstream_rst_between_frames():
    def act(up, c):
        c.sendall(frame(1, b"bye", mask=False))
        time.sleep(0.3 * vg.PAUSE)
        rst(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    data, how = read_all(s)
    up.join(6 * vg.SLOW)
    ok(data.startswith(b"\x81\x03bye") and b"\x88\x02\x03\xe9" in data,
       "upstream reset between frames: the client gets the frame, then "
       "1001 (%r)" % data[:16])


def close_frame(code, reason, mask):
    return frame(8, struct.pack(">H", code) + reason, mask=mask)


def case_client_half_close():
    """The client sends its close, then FIN: it still reads the reply."""
    def act(up, c):
        c.settimeout(5 * vg.SLOW)
        up.got = b""
        while len(up.got) < 11:          # a masked close with "bye"
            chunk = c.recv(64)
            if not chunk:
                break
            up.got += chunk
        c.sendall(close_frame(1000, b"bye", False))
        up.rest, up.closed = read_all(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    s.sendall(close_frame(1000, b"bye", True))
    s.shutdown(socket.SHUT_WR)
    data, how = read_all(s)
    up.join(6 * vg.SLOW)
    s.close()
    ok(data == b"\x88\x05\x03\xe8bye" and how == "closed",
       "client half-closes after its close: it gets the reply, then the "
       "TCP close (%r, %s)" % (data[:16], how))


def case_upstream_half_close():
    """The upstream sends its close, then FIN: it still reads the reply."""
    def act(up, c):
        c.sendall(close_frame(1000, b"bye", False))
        c.shutdown(socket.SHUT_WR)
        up.got, up.closed = read_all(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    data = PENDING.pop(s.fileno(), b"")
    if not data.endswith(b"bye"):
        data += recv_until(s, b"bye")
    s.sendall(close_frame(1000, b"bye", True))
    rest, how = read_all(s)
    up.join(6 * vg.SLOW)
    s.close()
    got = up.got
    ok(data.endswith(b"\x88\x05\x03\xe8bye") and len(got) == 11
       and got[:2] == b"\x88\x85",
       "upstream half-closes after its close: it gets the client's reply "
       "(%r, %s)" % (got[:16], up.closed))


def frames_of(data):
    """The frames in data, unmasked, as (opcode, fin, payload); the rest."""
    out = []
    while len(data) >= 2:
        n, pos = data[1] & 0x7f, 2
        if n == 126:
            if len(data) < 4:
                break
            n, pos = struct.unpack(">H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, pos = struct.unpack(">Q", data[2:10])[0], 10
        key = b""
        if data[1] & 0x80:
            key, pos = data[pos:pos + 4], pos + 4
        if len(data) < pos + n:
            break
        p = data[pos:pos + n]
        if key:
            p = bytes(b ^ key[i % 4] for i, b in enumerate(p))
        out.append((data[0] & 0x0f, bool(data[0] & 0x80), p))
        data = data[pos + n:]
    return out, data


def send_pieces(rnd, sock, data):
    pos = 0
    while pos < len(data):
        k = rnd.randint(1, 16 if rnd.random() < 0.5 else 3000)
        sock.sendall(data[pos:pos + k])
        pos += k
        if rnd.random() < 0.1:
            time.sleep(0.002)


def case_random_half_closes():
    """Seeded random streams that end with a close frame and a half-close
    (shutdown of the write side) at once, from either side, with and
    without a hook and aggregation: the other peer echoes every data frame,
    also after the FIN, and answers the close; the half-closed peer reads
    every echo, then the close reply, then the TCP close."""
    import random
    bad = []
    for seed in range(1, 17):
        rnd = random.Random(seed)
        from_client = seed % 2 == 1
        hook, agg = (seed // 2) % 2, (seed // 4) % 2
        msgs = [bytes(rnd.randrange(32, 127) for _ in
                      range(rnd.choice((0, 1, 125, 126, 3000, 70000))))
                for _ in range(rnd.randint(1, 6))]
        stream = b"".join(frame(1, m, mask=from_client) for m in msgs)
        stream += close_frame(1000, b"bye %d" % seed, from_client)

        def act(up, c, rnd=rnd, stream=stream):
            c.settimeout(10 * vg.SLOW)
            if from_client:
                # echo every text frame back, then answer the close
                buf, up.got = b"", []
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    got, buf = frames_of(buf)
                    for op, fin, p in got:
                        up.got.append((op, p))
                        if op == 1:
                            c.sendall(frame(1, p, mask=False))
                        elif op == 8:
                            c.sendall(close_frame(1000, b"ok", False))
                            up.rest, up.closed = read_all(c)
                            return
                up.closed = "eof"
            else:
                send_pieces(rnd, c, stream)
                c.shutdown(socket.SHUT_WR)
                up.rest, up.closed = read_all(c)

        up = Upstream(act)
        up.start()
        s, head = client(b"/ws?hook=%d&agg=%d" % (hook, agg))
        if from_client:
            send_pieces(rnd, s, stream)
            s.shutdown(socket.SHUT_WR)
            data, how = read_all(s)
            got, rest = frames_of(data)
            want = [(1, True, m) for m in msgs] + \
                [(8, True, struct.pack(">H", 1000) + b"ok")]
        else:
            # echo every text frame back (after the upstream's FIN too)
            buf, got, how = PENDING.pop(s.fileno(), b""), [], "closed"
            s.settimeout(10 * vg.SLOW)
            while not got or got[-1][0] != 8:
                part, buf = frames_of(buf)
                for op, fin, p in part:
                    got.append((op, fin, p))
                    if op == 1:
                        s.sendall(frame(1, p))
                    elif op == 8:
                        s.sendall(close_frame(1000, b"ok", True))
                if got and got[-1][0] == 8:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    how = "eof"
                    break
                buf += chunk
            _, how2 = read_all(s)
            want = [(1, True, m) for m in msgs] + \
                [(8, True, struct.pack(">H", 1000) + b"bye %d" % seed)]
        up.join(15 * vg.SLOW)
        s.close()
        if from_client:
            good = got == want and how == "closed"
        else:
            echoed, _ = frames_of(up.rest or b"")
            good = (got == want and [p for op, _, p in echoed if op == 1]
                    == msgs and echoed[-1:] and echoed[-1][0] == 8
                    and echoed[-1][2][2:] == b"ok")
        if not good:
            bad.append(seed)
    ok(not bad, "random streams ending with a close and a half-close, "
       "from either side: every echo, then the close reply (failed "
       "seeds: %r)" % bad)


def case_client_rst_while_written():
    # the upstream streams; the client reads nothing and resets: the module
    # is writing to it (or has bytes queued) when the RST comes
    def act(up, c):
        chunk = frame(2, b"z" * 65000, mask=False)
        c.settimeout(5 * vg.SLOW)
        try:
            for _ in range(200):
                c.sendall(chunk)
        except OSError:
            pass
        up.got, up.closed = read_all(c)

    up = Upstream(act)
    up.start()
    s, head = client()
    time.sleep(0.5 * vg.PAUSE)
    rst(s)
    up.join(10 * vg.SLOW)
    time.sleep(0.3 * vg.PAUSE)
    m = re.findall(r"execute: (\S+) ([^,]*), client", log())
    ok(m and m[-1] == ("nil", "client reset the connection"),
       "client reset while written to: execute() returns nil, \"client "
       "reset the connection\" (%r)" % (m[-1:],))


def main():
    os.makedirs(os.path.join(PREFIX, "logs"), exist_ok=True)
    logf = os.path.join(PREFIX, "logs", "error.log")
    if os.path.exists(logf):
        os.unlink(logf)
    conf = os.path.join(PREFIX, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CONF % {**target.CONF, "root": ROOT, "port": PORT, "up": UP,
                        "daemon": "off" if vg.USE else "on"})
    nginx = [target.NGINX, "-p", PREFIX + "/", "-c", conf]
    logdir = os.path.join(PREFIX, "logs")
    status = None
    try:
        proc = vg.start(nginx, logdir, PORT)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
    else:
        time.sleep(0.3 * vg.PAUSE)
        try:
            for case in (case_client_rst_mid_frame,
                         case_client_rst_between_frames,
                         case_upstream_rst_mid_frame,
                         case_upstream_rst_between_frames,
                         case_client_half_close,
                         case_upstream_half_close,
                         case_random_half_closes,
                         case_client_rst_while_written):
                try:
                    case()
                except Exception as e:
                    ok(False, "%s: %r" % (case.__name__, e))
                time.sleep(0.2 * vg.PAUSE)

            # still serving after all that?
            up = Upstream(lambda up, c: read_all(c))
            up.start()
            s, head = client()
            ok(head.startswith(b"HTTP/1.1 101"), "nginx still serves")
            s.close()
            up.join(6 * vg.SLOW)
        finally:
            # QUIT, not stop: sessions end and the pools are freed before
            # exit, so that valgrind's leak check sees only real leaks
            master.stop(PREFIX, signal.SIGQUIT if vg.USE else signal.SIGTERM)
            status = vg.wait(proc)

    text = log()
    ok("[alert]" not in text and "[crit]" not in text
       and "[emerg]" not in text, "no [alert], [crit] or [emerg]")
    ok("closed the connection in the middle of a frame" in text,
       "the mid-frame resets are logged and reported by execute()")
    vg.check(ok, os.path.join(PREFIX, "logs"), status)
    sys.exit(plan())


main()
