#!/usr/bin/python3
"""The Debian package, installed into the system (t/023-debian-package.t).

`make deb` builds libnginx-mod-http-ws-proxy_<version>_<arch>.deb; it is
installed with `apt-get install ./<deb>`, Debian's stock
/etc/nginx/nginx.conf is started with a site in /etc/nginx/conf.d that
proxies a WebSocket session to an echo location of the same nginx (nothing
points into the build tree: the module comes from
/etc/nginx/modules-enabled/, the Lua library from /usr/share/lua/5.1/), a
session goes through, nginx reloads, another session goes through, the
package is removed and nginx -t passes and nginx still serves after a
reload.  Whatever happens, the site is removed, the nginx it started is
stopped and the package purged.

It prints "1..0 # SKIP <reason>" when it cannot run: not root, the
packaging tools missing, its port (TEST_NGINX_DEB_PORT, 2390) or the stock
default site's port 80 in use, an nginx of /etc/nginx already running, the
package already installed.
"""

import base64
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PKG = "libnginx-mod-http-ws-proxy"
PORT = int(os.environ.get("TEST_NGINX_DEB_PORT", "2390"))
SITE = "/etc/nginx/conf.d/ws-proxy-debian-package-test.conf"
PIDFILE = "/run/nginx.pid"
ENABLED = "/etc/nginx/modules-enabled/60-mod-http-ws-proxy.conf"
LOCK = "/run/lock/ws-proxy-debian-package-test.lock"
SLOW = float(os.environ.get("TEST_NGINX_SLOW_FACTOR", "1") or 1)
ERROR_LOG = "/var/log/nginx/error.log"

SITE_CONF = """\
# written by t/023-debian-package.t, removed when it ends
server {
    listen 127.0.0.1:%(port)d;

    location = /health {
        return 200 "ok\\n";
    }

    # the upstream: lua-resty-websocket's echo server
    location = /echo {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new({ timeout = 5000 }))
            while true do
                local data, typ, err = wb:recv_frame()
                if not data then
                    return
                elseif typ == "close" then
                    return wb:send_close(err, data)
                elseif typ == "ping" then
                    wb:send_pong(data)
                elseif typ == "text" or typ == "binary" then
                    wb:send_frame(true, typ == "text" and 1 or 2, data)
                end
            end
        }
    }

    location = /ws {
        content_by_lua_block {
            local ws_proxy = require "resty.websocket.proxy"
            local proxy = assert(ws_proxy.new({
                on_frame = function(proxy, role, typ, payload, last, code)
                    if role == "upstream" and typ == "text" then
                        return "echo: " .. payload
                    end
                    return payload
                end,
            }))
            local ok, err = proxy:connect("ws://127.0.0.1:%(port)d/echo")
            if not ok then
                ngx.log(ngx.ERR, err)
                return ngx.exit(502)
            end
            local done, err = proxy:execute()
            if not done then
                ngx.log(ngx.ERR, "failed proxying: ", err)
            end
        }
    }
}
"""

# state for the cleanup
started_master = None
site_written = False
deferring = False
pending = 0
cleaning = False
# every step ends by this time; the cleanup has 25 s more, the wrapper
# (t/023-debian-package.t) kills the test at 110 s
DEADLINE = time.time() + 80
log_offset = 0

planned = 0
count = 0
failed = 0


def skip(reason):
    print("1..0 # SKIP %s" % reason)
    sys.exit(0)


def ok(cond, name, diag=None):
    global count, failed
    count += 1
    if cond:
        print("ok %d - %s" % (count, name))
    else:
        failed += 1
        print("not ok %d - %s" % (count, name))
        if diag:
            for line in str(diag).rstrip().splitlines()[-30:]:
                print("#   " + line)
    sys.stdout.flush()
    return cond


def run(argv, timeout, critical=False, **kw):
    """argv with a time limit: (status, stdout+stderr); 124 on timeout.

    It runs in a process group of its own, killed whole on a timeout or
    when the test is interrupted, so nothing it started outlives it (make
    deb's dpkg-buildpackage).  A critical command (apt-get, which runs
    dpkg) is not interrupted: a SIGTERM or SIGINT that comes meanwhile is
    acted on when it is done."""
    global deferring, pending
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    if not cleaning:
        timeout = max(1, min(timeout, DEADLINE - time.time()))
    deferring = critical
    p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env,
                         start_new_session=True, **kw)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        kill_group(p)
        out = (p.communicate()[0] or b"").decode("utf-8", "replace")
        return 124, out + "\n(timed out after %ds: %s)" % (timeout,
                                                          " ".join(argv))
    except BaseException:
        kill_group(p)
        raise
    finally:
        deferring = False
        sig, pending = pending, 0
        if sig:
            raise SystemExit("signal %d (after %s)" % (sig, argv[0]))


def kill_group(p):
    for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 0)):
        try:
            os.killpg(p.pid, sig)
        except OSError:
            return
        try:
            p.wait(timeout=grace or None)
            return
        except subprocess.TimeoutExpired:
            pass


def port_free(host, port, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError as e:
        # no IPv6 on this machine: nginx's [::]:80 would fail, not ours
        return family == socket.AF_INET6 and e.errno == 99
    finally:
        s.close()


def nginx_masters_of_etc():
    """Masters of /etc/nginx's configuration (no -c, or -c under /etc)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() != "nginx":
                    continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8",
                                                             "replace")
        except OSError:
            continue
        if "master process" not in cmd:
            continue
        m = re.search(r" -c\s*(\S+)", cmd)
        if m is None or m.group(1).startswith("/etc/nginx/"):
            found.append(int(d))
    return found


def pkg_status():
    st, out = run(["dpkg-query", "-W", "-f", "${Status}", PKG], 10)
    return out.strip() if st == 0 else ""


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/status" % pid) as f:
            return not re.search(r"^State:\s*Z", f.read(), re.M)
    except OSError:
        return False


def children(pid):
    st, out = run(["pgrep", "-P", str(pid)], 5)
    return sorted(int(x) for x in out.split() if x.isdigit())


def wait_port(port, timeout):
    end = min(time.time() + timeout, DEADLINE)
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes"
                           % (len(buf), n))
        buf += chunk
    return buf


def send_frame(s, opcode, payload):
    key = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    s.sendall(head + key + masked)


def recv_frame(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    if b1 & 0x80:
        raise ValueError("a masked frame from the server")
    return b0 & 0x0F, recv_exact(s, n)


def http_get(path, timeout=5):
    s = socket.create_connection(("127.0.0.1", PORT), timeout * SLOW)
    s.settimeout(timeout * SLOW)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")
    finally:
        s.close()


def session(text):
    """One WebSocket session through /ws: (ok, what happened)."""
    story = []
    s = socket.create_connection(("127.0.0.1", PORT), 5 * SLOW)
    s.settimeout(5 * SLOW)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n"
                   % (PORT, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                return False, "closed in the handshake: %r" % head
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        story.append(status)
        if " 101 " not in status + " ":
            return False, "; ".join(story)
        send_frame(s, 0x1, text.encode())
        op, payload = recv_frame(s)
        story.append("opcode %d %r" % (op, payload))
        if op != 0x1 or payload != ("echo: " + text).encode():
            return False, "; ".join(story)
        send_frame(s, 0x8, struct.pack("!H", 1000) + b"bye")
        op, payload = recv_frame(s)
        story.append("opcode %d %r" % (op, payload))
        if op != 0x8 or payload[:2] != struct.pack("!H", 1000):
            return False, "; ".join(story)
        return True, "; ".join(story)
    except (OSError, EOFError, ValueError) as e:
        story.append("%s: %s" % (type(e).__name__, e))
        return False, "; ".join(story)
    finally:
        s.close()


def error_log_tail():
    try:
        with open(ERROR_LOG, "rb") as f:
            f.seek(log_offset)
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return str(e)


def stop_nginx(pid):
    workers = children(pid)
    try:
        os.kill(pid, signal.SIGQUIT)
    except OSError:
        pass
    end = time.time() + 10
    while time.time() < end and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        time.sleep(1)
    for p in [pid] + workers:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    if os.path.exists(PIDFILE):
        try:
            with open(PIDFILE) as f:
                if f.read().strip() == str(pid):
                    os.unlink(PIDFILE)
        except OSError:
            pass


def cleanup():
    global cleaning
    cleaning = True
    # a second signal must not cut the cleanup short
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if started_master is not None and alive(started_master):
        stop_nginx(started_master)
    if site_written and os.path.exists(SITE):
        os.unlink(SITE)
    if pkg_status():
        st, out = run(["apt-get", "purge", "-y", "-q",
                       "-o", "DPkg::Lock::Timeout=10", PKG], 25,
                      critical=True)
        if st != 0:
            print("# purging %s failed:\n# %s" % (PKG, out.replace(
                "\n", "\n# ")))
    for leftover in (ENABLED, ENABLED + ".removed"):
        if os.path.islink(leftover):
            os.unlink(leftover)


def on_signal(signum, frame):
    global pending
    if deferring:
        pending = signum
        return
    raise SystemExit("signal %d" % signum)


def main():
    global started_master, site_written, log_offset

    # the test matrix (util/run-tests): only where the distribution's nginx
    # is the one under test does its package make sense
    if os.environ.get("TEST_NGINX_DEB_TARGET", "1") != "1":
        skip("target %s is not the distribution's nginx (the package is "
             "for Debian's; TEST_NGINX_DEB_TARGET)"
             % os.environ.get("TEST_NGINX_TARGET", "?"))
    if os.geteuid() != 0:
        skip("not root (installs a package into the system)")
    for tool in ("/usr/bin/dpkg-buildpackage", "/usr/bin/dh",
                 "/usr/bin/dh_nginx", "/usr/bin/lintian",
                 "/usr/bin/apt-get", "/usr/sbin/nginx"):
        if not os.access(tool, os.X_OK):
            skip("no %s (make deb-deps installs it)" % tool)
    if not os.path.exists("/etc/nginx/nginx.conf"):
        skip("no /etc/nginx/nginx.conf")
    # a pid file of a live process: an nginx of /etc/nginx may be running;
    # an empty or stale one (a package's start that failed, a killed run)
    # is nginx's to overwrite when it starts
    if os.path.exists(PIDFILE):
        try:
            with open(PIDFILE) as f:
                held = int(f.read().strip() or 0)
        except (OSError, ValueError):
            held = 0
        if held and alive(held):
            skip("%s names process %d: an nginx of /etc/nginx may be "
                 "running" % (PIDFILE, held))
    masters = nginx_masters_of_etc()
    if masters:
        skip("an nginx of /etc/nginx is running (pid %s)"
             % ", ".join(map(str, masters)))
    if pkg_status():
        skip("%s is already installed (%s)" % (PKG, pkg_status()))
    if os.path.exists(SITE):
        skip("%s exists" % SITE)
    if not port_free("127.0.0.1", PORT):
        skip("port %d is in use" % PORT)
    if not (port_free("0.0.0.0", 80)
            and port_free("::", 80, socket.AF_INET6)):
        skip("port 80 (the stock default site) is in use")

    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        skip("another run of this test holds %s" % LOCK)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    print("1..%d" % planned)
    sys.stdout.flush()
    try:
        steps()
    finally:
        cleanup()
        ok(pkg_status() == "" and not os.path.exists(SITE)
           and not os.path.lexists(ENABLED)
           and not os.path.lexists(ENABLED + ".removed")
           and not nginx_masters_of_etc(),
           "the machine as it was: package purged, site removed, "
           "nginx stopped")
    if count < planned:
        for _ in range(planned - count):
            ok(False, "not reached")
    sys.exit(1 if failed else 0)


def steps():
    global started_master, site_written, log_offset

    # build: make deb (debhelper, dh_nginx, lintian) in build/deb/
    t0 = time.time()
    st, out = run(["make", "-s", "--no-print-directory", "-C", ROOT, "deb"],
                  90 * SLOW)
    debs = re.findall(r"^(/\S+/%s_[^/\s]+\.deb)$" % PKG, out, re.M)
    if not ok(st == 0 and debs and os.path.isfile(debs[-1]),
              "make deb builds the package and lintian passes it (%.0f s)"
              % (time.time() - t0), out):
        return
    deb = debs[-1]
    print("# %s" % deb)

    # the module runs without Lua (ws_proxy_pass): the Lua module, which
    # the library needs, is recommended, not required.  The ABI is the one
    # this release's nginx provides (nginx-abi-1.22.1-7 on Debian 12,
    # nginx-abi-1.26.3-1 on Debian 13)
    st, out = run(["dpkg-deb", "-f", deb, "Depends", "Recommends"], 10)
    depends = re.search(r"^Depends: (.*)$", out, re.M)
    recommends = re.search(r"^Recommends: (.*)$", out, re.M)
    st, provides = run(["dpkg-query", "-W", "-f", "${Provides}", "nginx"],
                       10)
    abi = re.search(r"\bnginx-abi-[0-9.]+-[0-9]+\b", provides)
    abi = abi.group(0) if abi else "(no nginx-abi in %r)" % provides
    ok(depends and abi in re.split(r",\s*", depends.group(1))
       and not re.search(r"\blibnginx-mod-http-lua\b", depends.group(1))
       and recommends
       and re.search(r"\blibnginx-mod-http-lua\b", recommends.group(1)),
       "Depends on the nginx ABI of this release's nginx, %s, Recommends "
       "the Lua module" % abi, out)

    # install it as a user would: apt-get install ./<deb>, no network
    st, out = run(["apt-get", "install", "-y", "-q",
                   "-o", "DPkg::Lock::Timeout=30",
                   "./" + os.path.basename(deb)], 60 * SLOW,
                  critical=True, cwd=os.path.dirname(deb))
    if not ok(st == 0 and pkg_status() == "install ok installed",
              "apt-get install ./%s" % os.path.basename(deb), out):
        return
    ok(os.path.isfile("/usr/lib/nginx/modules/ngx_http_ws_proxy_module.so")
       and os.path.isfile("/usr/share/lua/5.1/resty/websocket/proxy.lua")
       and os.path.realpath(ENABLED)
       == "/usr/share/nginx/modules-available/mod-http-ws-proxy.conf"
       and os.path.isfile("/usr/share/doc/%s/copyright" % PKG),
       "the module, the Lua library, the docs and the 60- load_module "
       "snippet are in place")

    # the site: nothing points into the build tree
    with open(SITE, "w") as f:
        f.write(SITE_CONF % {"port": PORT})
    site_written = True
    try:
        log_offset = os.path.getsize(ERROR_LOG)
    except OSError:
        log_offset = 0
    st, out = run(["/usr/sbin/nginx", "-T"], 20)
    ok(st == 0 and ROOT not in out and "load_module modules/"
       "ngx_http_ws_proxy_module.so" in out,
       "nginx -T: the stock nginx.conf loads the module from "
       "modules-enabled, no path into %s" % ROOT,
       out if st != 0 else "")

    st, out = run(["/usr/sbin/nginx"], 20)
    pid = None
    end = min(time.time() + 10 * SLOW, DEADLINE)
    while time.time() < end and pid is None:
        try:
            with open(PIDFILE) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.1)
    if pid is not None:
        started_master = pid
    if not ok(st == 0 and pid and wait_port(PORT, 10 * SLOW),
              "nginx starts with /etc/nginx/nginx.conf",
              out + error_log_tail()):
        return

    good, story = session("hello")
    ok(good, "a session through the proxy: " + story, error_log_tail())

    # reload: new workers, the module loaded again from modules-enabled
    before = children(pid)
    st, out = run(["/usr/sbin/nginx", "-s", "reload"], 20)
    end = min(time.time() + 15 * SLOW, DEADLINE)
    after = children(pid)
    while time.time() < end and (not after or set(after) & set(before)):
        time.sleep(0.2)
        after = children(pid)
    ok(st == 0 and after and not set(after) & set(before) and alive(pid),
       "nginx -s reload: new workers %s (were %s)" % (after, before),
       out + error_log_tail())

    good, story = session("after reload")
    ok(good, "a session after the reload: " + story, error_log_tail())

    # remove the package: nginx -t passes, nginx still serves
    st, out = run(["apt-get", "remove", "-y", "-q",
                   "-o", "DPkg::Lock::Timeout=30", PKG], 60 * SLOW,
                  critical=True)
    ok(st == 0 and pkg_status() in ("", "deinstall ok config-files")
       and not os.path.exists(ENABLED)
       and not os.path.exists(
           "/usr/lib/nginx/modules/ngx_http_ws_proxy_module.so"),
       "apt-get remove: the module and its snippet are gone", out)

    st, out = run(["/usr/sbin/nginx", "-t"], 20)
    ok(st == 0, "nginx -t passes without the package", out)

    before = children(pid)
    st, out = run(["/usr/sbin/nginx", "-s", "reload"], 20)
    end = min(time.time() + 15 * SLOW, DEADLINE)
    after = children(pid)
    while time.time() < end and (not after or set(after) & set(before)):
        time.sleep(0.2)
        after = children(pid)
    try:
        reply = http_get("/health")
    except OSError as e:
        reply = str(e)
    ok(st == 0 and after and not set(after) & set(before)
       and reply.startswith("HTTP/1.1 200") and reply.endswith("ok\n"),
       "after a reload nginx still serves", out + reply + error_log_tail())

    good, story = session("gone")
    ok(not good and "101" not in story,
       "without the package /ws is no WebSocket proxy: " + story)

    log = error_log_tail()
    ok(not re.search(r"\[(alert|crit|emerg)\]", log),
       "no [alert], [crit] or [emerg] in %s" % ERROR_LOG, log)


planned = 15

if __name__ == "__main__":
    main()
