#!/usr/bin/python3
"""ws_proxy_pass in an nginx that loads only this module: no
ngx_http_lua_module, no NDK (TAP).  The upstreams and the client are
Python sockets.  nginx -t and the start must pass without the Lua module
(the module finds lua-nginx-module's functions at run time, only when the
Lua library asks); sessions through an upstream group are balanced, the
dead server is skipped, a dead address is 502, a limit closes with 1009,
a plain GET is 400, and the Lua module is nowhere in the worker's memory."""

import base64
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import master
import target
import vg
from tap import ok, plan, skip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = target.prefix("no-lua")
TLS = int(os.environ.get("TEST_NGINX_TLS_PORT", "1986"))
PORT = int(os.environ.get("TEST_NGINX_NOLUA_PORT", str(TLS + 12)))
UP1 = PORT + 1
UP2 = TLS + 10
DEAD = TLS + 11
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONF = """
load_module %(ws_proxy_module)s;
daemon %(daemon)s;
master_process on;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    log_format ws '$status $ws_proxy_upstream_addr $ws_proxy_client_frames '
                  '$ws_proxy_upstream_close_code $ws_proxy_closed_by';
    access_log logs/access.log ws;

    upstream chat {
        server 127.0.0.1:%(up1)d;
        server 127.0.0.1:%(up2)d;
        server 127.0.0.1:%(dead)d;
    }

    server {
        listen 127.0.0.1:%(port)d;
        location /ws { ws_proxy_pass ws://chat/chat; }
        location /dead { ws_proxy_pass ws://127.0.0.1:%(dead)d/; }
        location /small {
            ws_proxy_client_max_frame_size 100;
            ws_proxy_pass ws://127.0.0.1:%(up1)d/small;
        }
        location /pass {
            ws_proxy_set_header X-Real-IP $remote_addr;
            ws_proxy_pass ws://127.0.0.1:%(up1)d;
        }
    }
}
"""

def recv_exact(sock, k):
    data = b""
    while len(data) < k:
        chunk = sock.recv(k - len(data))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(data), k))
        data += chunk
    return data


def recv_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def frame(opcode, payload, mask):
    head = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    if len(payload) < 126:
        head += bytes([m | len(payload)])
    else:
        head += bytes([m | 126]) + struct.pack(">H", len(payload))
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def read_frame(sock):
    b1, b2 = recv_exact(sock, 2)
    k = b2 & 0x7f
    if k == 126:
        k = struct.unpack(">H", recv_exact(sock, 2))[0]
    elif k == 127:
        k = struct.unpack(">Q", recv_exact(sock, 8))[0]
    key = recv_exact(sock, 4) if b2 & 0x80 else None
    payload = recv_exact(sock, k)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b1 & 0x0f, payload


class Upstream(threading.Thread):
    """A WebSocket server: text frames come back as "<port>:<text>"."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(16)

    def run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        try:
            req = recv_head(c)
            key = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                      b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            while True:
                op, payload = read_frame(c)
                if op == 8:
                    c.sendall(frame(8, payload, False))
                    return
                if payload == b"head?":
                    # the upgrade request as this server got it
                    c.sendall(frame(1, req, False))
                    continue
                c.sendall(frame(1, b"%d:" % self.port + payload, False))
        except (OSError, EOFError, IndexError):
            pass
        finally:
            c.close()


def client(path, headers=b""):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              + headers + b"\r\n")
    return s, recv_head(s)


def session(path, text):
    """One session: the status, then the echo of text, then the close."""
    s, head = client(path)
    m = re.match(rb"HTTP/1\.1 (\d+)", head)
    status = int(m.group(1)) if m else None
    if status != 101:
        s.close()
        return status, None
    s.sendall(frame(1, text, True))
    op, got = read_frame(s)
    s.sendall(frame(8, struct.pack(">H", 1000) + b"done", True))
    op2, reply = read_frame(s)
    s.close()
    return status, (op, got, op2, reply)


def log(name):
    with open(os.path.join(PREFIX, "logs", name)) as f:
        return f.read()


def cases(pid):
    maps = ""
    if pid:
        # the worker: the master's one child
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            worker = int(f.read().split()[0])
        with open("/proc/%d/maps" % worker) as f:
            maps = f.read()

    got = {}
    for i in range(6):
        status, res = session(b"/ws", b"hi")
        if res and res[0] == 1:
            got[res[1]] = got.get(res[1], 0) + 1
    ok(got == {b"%d:hi" % UP1: 3, b"%d:hi" % UP2: 3},
       "ws_proxy_pass through a group: 6 sessions, 3 on each live server "
       "(%r)" % got)

    time.sleep(0.2 * vg.PAUSE)
    acc = log("access.log")
    ok(acc.count(":%d" % DEAD) == 1
       and "101 127.0.0.1:%d, 127.0.0.1:%d " % (DEAD, UP1) in acc
       or "101 127.0.0.1:%d, 127.0.0.1:%d " % (DEAD, UP2) in acc,
       "the dead server is tried once, then skipped; "
       "$ws_proxy_upstream_addr lists both")
    ok(re.search(r"^101 127\.0\.0\.1:\d+ 2 1000 client$", acc, re.M),
       "the log variables: client frames, close code, closed by")

    status, res = session(b"/dead", b"hi")
    ok(status == 502, "an unreachable address is 502 (%r)" % status)

    s, head = client(b"/small")
    s.sendall(frame(1, b"x" * 200, True))
    op, payload = read_frame(s)
    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
    ok(op == 8 and code == 1009,
       "ws_proxy_client_max_frame_size: the client gets 1009 (%r %r)"
       % (op, code))
    s.close()

    # a browser's request: '"', '|', '{' and UTF-8 unencoded, its headers
    s, head = client(b'/pass/q"|caf\xc3\xa9?f={x}',
                     b"Origin: https://chat.example\r\nCookie: a=1\r\n"
                     b"X-Real-IP: 6.6.6.6\r\n")
    s.sendall(frame(1, b"head?", True))
    op, got = read_frame(s)
    s.close()
    ok(head.startswith(b"HTTP/1.1 101")
       and got.startswith(b"GET /pass/q%22%7Ccaf%C3%A9?f=%7Bx%7D HTTP/1.1\r\n")
       and b"\r\nOrigin: https://chat.example\r\nCookie: a=1\r\n" in got
       and b"\r\nX-Real-IP: 127.0.0.1\r\n" in got
       and b"6.6.6.6" not in got,
       "ws_proxy_pass without a URI part: the client's URI (encoded where "
       "RFC 3986 wants it) and headers, X-Real-IP replaced (%r)" % got)

    s = socket.create_connection(("127.0.0.1", PORT), timeout=5 * vg.SLOW)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    head = recv_head(s)
    s.close()
    ok(head.startswith(b"HTTP/1.1 400"), "a plain GET is 400")

    # nginx -s quit with a session open: the worker stays for it
    s, head = client(b"/ws")
    quit = subprocess.run(NGINX + ["-s", "quit"], capture_output=True)
    time.sleep(0.5 * vg.PAUSE)
    s.sendall(frame(1, b"after quit", True))
    op, got = read_frame(s)
    ok(quit.returncode == 0 and op == 1 and got.endswith(b":after quit"),
       "after nginx -s quit an open session still echoes (%r)" % got)
    s.sendall(frame(8, struct.pack(">H", 1000), True))
    op, got = read_frame(s)
    s.close()
    ok(op == 8, "... and closes normally")

    if pid:
        gone = False
        for i in range(50 * vg.SLOW):
            try:
                os.kill(pid, 0)
            except OSError:
                gone = True
                break
            time.sleep(0.1)
        ok(gone, "... and then nginx exits")

    name = ("the worker has this module loaded, and no Lua module, NDK or "
            "LuaJIT")
    if pid and target.LUA == "builtin":
        # OpenResty: lua-nginx-module and LuaJIT are in the binary itself
        skip(name, "lua-nginx-module is built into %s's nginx"
             % (target.NAME or "this"))
    elif pid:
        ok("ngx_http_ws_proxy_module.so" in maps
           and "ngx_http_lua_module" not in maps and "ndk_http" not in maps
           and "luajit" not in maps, name)


NGINX = [target.NGINX, "-p", PREFIX + "/", "-c",
         os.path.join(PREFIX, "nginx.conf")]


def main():
    os.makedirs(os.path.join(PREFIX, "logs"), exist_ok=True)
    for name in ("error.log", "access.log"):
        p = os.path.join(PREFIX, "logs", name)
        if os.path.exists(p):
            os.unlink(p)
    conf = os.path.join(PREFIX, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CONF % {**target.CONF, "port": PORT, "up1": UP1, "up2": UP2,
                        "dead": DEAD, "daemon": "off" if vg.USE else "on"})
    nginx = NGINX

    r = subprocess.run(nginx + ["-t"], capture_output=True, text=True)
    ok(r.returncode == 0, "nginx -t with only this module: %s"
       % r.stderr.strip().replace("\n", " | "))

    ups = [Upstream(UP1), Upstream(UP2)]
    for u in ups:
        u.start()

    logdir = os.path.join(PREFIX, "logs")
    status = None
    try:
        proc = vg.start(nginx, logdir, PORT)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
    else:
        time.sleep(0.3 * vg.PAUSE)
        try:
            pid = proc.pid if proc else int(open(
                os.path.join(PREFIX, "logs", "nginx.pid")).read())
            cases(None if vg.USE else pid)
        except Exception as e:
            ok(False, "the sessions: %r" % e)
        finally:
            master.stop(PREFIX, signal.SIGQUIT if vg.USE else signal.SIGTERM)
            status = vg.wait(proc)

    text = log("error.log")
    ok("[alert]" not in text and "[crit]" not in text
       and "[emerg]" not in text, "no [alert], [crit] or [emerg]")
    vg.check(ok, logdir, status)
    sys.exit(plan())


main()
