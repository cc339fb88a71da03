#!/usr/bin/python3
"""The console across two workers (TAP): issue 25, items 1 and 2.

nginx runs with a master process and two workers (reuseport spreads the
connections over both), 1,000 sessions through ws_proxy_pass, 100 for each
of ten keys.  ?sessions lists them all whichever worker answers, with both
workers' pids; a key, a client address filter them; pages of 300 cover
them once each.  Then sessions of both workers are closed by id with a
code and a reason of their own, through whichever worker takes the
request: each one ends with its code and reason, and every other session
still echoes, its connection open.  Under ~30 s.
"""

import asyncio
import json
import os
import resource
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import websockets

import master
import target
import vg
from wscompat import headers
from tap import ok, plan

PREFIX = master.prefix("console")
PORT = int(os.environ.get("TEST_NGINX_CONSOLE_PORT", "20030"))
N = 1000
KEYS = 10

CONF = """
%(load_modules)s
worker_processes 2;
worker_rlimit_nofile 8192;
daemon %(daemon)s;
master_process on;
worker_shutdown_timeout 1s;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    lua_package_path "%(lua_path)s";
    ws_proxy_zone wsp 2m;

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
                    wb:send_text(data)
                end
            }
        }

        location = /status {
            ws_proxy_status control;
            add_header X-Worker $pid always;
        }

        location /ws {
            ws_proxy_zone_key "k-$arg_k";
            ws_proxy_flight_recorder 4;
            add_header X-Worker $pid always;
            ws_proxy_pass ws://127.0.0.1:%(port)d/echo;
        }
    }
}
"""


def request(method, path, worker=None):
    """(status, the JSON answer); worker: a list that gets the pid of the
    worker that answered"""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (PORT, path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10 * vg.SLOW) as r:
            if worker is not None:
                worker.append(int(r.headers.get("X-Worker")))
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "null")


async def session(i):
    key = i % KEYS
    ws = await websockets.connect("ws://127.0.0.1:%d/ws?k=%d" % (PORT, key),
                                  open_timeout=20 * vg.SLOW,
                                  close_timeout=10 * vg.SLOW,
                                  ping_interval=None)
    await ws.send("hi")
    await ws.recv()
    port = ws.local_address[1] if hasattr(ws, "local_address") \
        else ws.transport.get_extra_info("sockname")[1]
    return {"ws": ws, "key": "k-%d" % key, "port": port,
            "worker": int(headers(ws, "response").get("X-Worker"))}


async def main():
    t0 = time.time()
    sessions = []
    for b in range(0, N, 100):
        sessions += await asyncio.gather(*[session(i)
                                           for i in range(b, b + 100)])
    workers = sorted(set(s["worker"] for s in sessions))
    ok(len(sessions) == N and len(workers) == 2,
       "%d sessions open, held by two workers %s (%.1f s)"
       % (len(sessions), workers, time.time() - t0))

    st, j = request("GET", "/status?sessions&limit=1000")
    listed = {s["worker"] for s in j.get("sessions", [])}
    ok(st == 200 and j["total"] == N and j["unlisted"] == 0
       and len(j["sessions"]) == N and listed == set(workers),
       "?sessions&limit=1000: total %s, unlisted %s, %d listed, workers %s"
       % (j.get("total"), j.get("unlisted"), len(j.get("sessions", [])),
          sorted(listed)))

    by_port = {}
    for s in j["sessions"]:
        by_port[int(s["client"].rsplit(":", 1)[1])] = s
    ok(all(by_port.get(s["port"], {}).get("key") == s["key"]
           and by_port[s["port"]]["worker"] == s["worker"]
           for s in sessions),
       "each session listed with its key, client address and worker")

    st, j = request("GET", "/status?sessions&key=k-3&limit=1000")
    ok(st == 200 and j["total"] == N // KEYS
       and all(s["key"] == "k-3" for s in j["sessions"]),
       "key=k-3: %s sessions, all of that key" % j.get("total"))

    one = sessions[123]
    st, j = request("GET", "/status?sessions&client=127.0.0.1:%d"
                    % one["port"])
    ok(st == 200 and j["total"] == 1
       and j["sessions"][0]["worker"] == one["worker"],
       "client=127.0.0.1:%d: the one session" % one["port"])

    ids = []
    for off in range(0, N, 300):
        st, j = request("GET", "/status?sessions&sort=key&limit=300"
                        "&offset=%d" % off)
        ids += [s["id"] for s in j["sessions"]]
    ok(len(ids) == N and len(set(ids)) == N,
       "pages of 300 by key: %d ids, %d distinct" % (len(ids), len(set(ids))))

    # one session's recorder from both workers: its own reads it live, the
    # other the copy the flush put in the zone
    await asyncio.sleep(1.3)
    one = sessions[7]
    sid = by_port[one["port"]]["id"]
    answers = {}
    for _ in range(40):
        w = []
        st, j = request("GET", "/status?session=%s" % sid, w)
        answers[w[0]] = [(f["op"], f["len"], f["action"])
                         for d in ("client", "upstream")
                         for f in j["frames_recent"][d]]
        if len(answers) == 2:
            break
    want = [("text", 2, "forwarded"), ("text", 2, "forwarded")]
    ok(len(answers) == 2 and all(a == want for a in answers.values()),
       "?session=<id> answered by both workers: the same recorder %s"
       % answers)

    # close sessions of both workers, each with its own code and reason
    victims = []
    for w in workers:
        victims += [s for s in sessions if s["worker"] == w][:3]
    results = []
    for n, v in enumerate(victims):
        sid = by_port[v["port"]]["id"]
        code = 4000 + n
        st, j = request("POST", "/status?session=%s&close&code=%d&reason=%s"
                        % (sid, code, urllib.parse.quote("console %d" % n)))
        results.append(st == 200 and j.get("closed") is True
                       and j.get("code") == code)
    ok(all(results), "6 closes by id, 3 per worker: all 200 closed "
       "(%s)" % results)

    ended = []
    for n, v in enumerate(victims):
        try:
            await asyncio.wait_for(v["ws"].wait_closed(), 10 * vg.SLOW)
        except asyncio.TimeoutError:
            pass
        ended.append((v["ws"].close_code, v["ws"].close_reason)
                     == (4000 + n, "console %d" % n))
    ok(all(ended), "each closed session got its own code and reason: %s"
       % [(v["ws"].close_code, v["ws"].close_reason) for v in victims])

    gone = set(id(v) for v in victims)
    rest = [s for s in sessions if id(s) not in gone]

    async def echo(s):
        await s["ws"].send("again")
        return await asyncio.wait_for(s["ws"].recv(), 10 * vg.SLOW)

    answers = await asyncio.gather(*[echo(s) for s in rest],
                                   return_exceptions=True)
    ok(all(a == "again" for a in answers)
       and all(s["ws"].close_code is None for s in rest),
       "the other %d sessions untouched: each still echoes" % len(rest))

    st, j = request("GET", "/status?sessions&limit=1000")
    ok(j["total"] == N - len(victims),
       "the list has %d open sessions" % j["total"])

    st, j = request("POST", "/status?session=%s&close"
                    % by_port[victims[0]["port"]]["id"])
    ok(st == 404, "closing an ended session: %d" % st)

    await asyncio.gather(*[s["ws"].close() for s in rest])
    ok(time.time() - t0 < 30 * vg.SLOW, "took %.1f s" % (time.time() - t0))


def run():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)),
                                                hard))
    logdir, log = master.prepare(PREFIX, CONF, port=PORT)
    _, status_ = master.serve(PREFIX, PORT, "console test", main, ok)
    master.no_alert(ok, log)
    vg.check(ok, logdir, status_)
    sys.exit(plan())


run()
