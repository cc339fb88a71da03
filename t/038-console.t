# vim:set ts=4 sts=4 sw=4 et ft=:

# The operators' console (issue 25, items 1, 2, 4, 6): the registry of
# sessions in the ws_proxy_zone (?sessions: filter, sort, page; a full
# zone counts "unlisted"), one session with its flight recorder
# (?session=<id>), closing a session by id (POST ...&close, code and
# reason; 403 without "ws_proxy_status control", 404, 400), the recorder
# dumped at [info] when a session ends badly (1009, a ping timeout), Lua's
# ws_proxy.sessions() and close_session(), nginx -t's refusals.  Across two
# workers and 1,000 sessions: t/e2e/console.py.

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $Config = $t::WsProxy::HttpConfig . q{
    ws_proxy_zone wsp 1m;
};

# the upstream echoes text, answers a close
our $Up = q{
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f = s:recv_frame()
                if not f then
                    return
                end
                if f.opcode == 8 then
                    s:send_close(f.code, "bye")
                    return
                end
                if f.opcode == 1 then
                    s:send_text("echo " .. f.payload)
                end
            end
        }
    }
};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $Config);
    }

    if ($block->can('client') && defined $block->client) {
        my $proxy = $block->can('proxy') && defined $block->proxy
                    ? $block->proxy
                    : "ws_proxy_pass ws://127.0.0.1:\$server_port/up;";
        $block->set_value("config", $Up . <<"_EOC_");
    location /status { ws_proxy_status control; }
    location /status-ro { ws_proxy_status; }

    location /proxy {
        ws_proxy_zone_key \$arg_k;
$proxy
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local function open(path)
                local c, err = ws.client(path)
                if not c then
                    return nil, err
                end
                c:send_text("hi")
                local f = c:recv_frame()
                if not f or f.payload ~= "echo hi" then
                    return nil, "no echo"
                end
                return c
            end
            -- an HTTP request of its own (the close waits on a timer)
            local function http(method, uri)
                local sock = ngx.socket.tcp()
                sock:settimeout(8000)
                assert(sock:connect("127.0.0.1", ngx.var.server_port))
                assert(sock:send(method .. " " .. uri .. " HTTP/1.0\\r\\n"
                                 .. "Host: localhost\\r\\n\\r\\n"))
                local resp = sock:receive("*a")
                sock:close()
                local status = tonumber(resp:match("^HTTP/1.%d (%d+)"))
                return status, resp:match("\\r\\n\\r\\n(.*)\$")
            end
            local function ids(body)
                local t = {}
                for id in body:gmatch('"id":"([%d%-]+)"') do
                    t[#t + 1] = id
                end
                return t
            end
@{[ $block->client ]}
        }
    }
_EOC_
    }
});

no_shuffle();
worker_connections(1024);
run_tests();

__DATA__

=== TEST 1: the list: every open session with its fields; filter by key, client, age; sort; page
--- client
            local a = assert(open("/proxy?k=alpha"))
            local b = assert(open("/proxy?k=beta"))
            local c = assert(open("/proxy?k=beta"))
            ngx.sleep(1.1)    -- a flush: the frames counted
            local st, body = http("GET", "/status?sessions")
            ngx.say(st, " ", body:match('"total":%d+,"unlisted":%d+,"offset":0,"limit":100'))
            ngx.say(#ids(body), " ids")
            ngx.say(body:match('"key":"alpha","location":"/proxy","client":"127.0.0.1:%d+","upstream":"127.0.0.1:%d+","start":%d+%.%d%d%d,"age":%d+%.%d%d%d,"worker":%d+,"frames":{"client":1,"upstream":1},"bytes":{"client":8,"upstream":9},"deflate":false,"hook":false,"state":"open","end":null,"close_codes":{"client":null,"upstream":null},"recorder":false,"taps":0}') and "fields ok" or body)
            st, body = http("GET", "/status?sessions&key=beta")
            ngx.say("key=beta: ", body:match('"total":%d+'), " ", #ids(body))
            st, body = http("GET", "/status?sessions&client=127.0.0.2")
            ngx.say("client=127.0.0.2: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&client=127.0.0.1")
            ngx.say("client=127.0.0.1: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&min_age=60")
            ngx.say("min_age=60: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&max_age=60&upstream=127.0.0.1:" .. ngx.var.server_port)
            ngx.say("max_age=60, upstream: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&upstream=10.")
            ngx.say("upstream=10.: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&sort=key")
            local keys = {}
            for k in body:gmatch('"key":"(%w+)"') do keys[#keys + 1] = k end
            ngx.say("sort=key: ", table.concat(keys, " "))
            st, body = http("GET", "/status?sessions&sort=-key")
            keys = {}
            for k in body:gmatch('"key":"(%w+)"') do keys[#keys + 1] = k end
            ngx.say("sort=-key: ", table.concat(keys, " "))
            local all = ids(select(2, http("GET", "/status?sessions&sort=-age")))
            local p1 = ids(select(2, http("GET", "/status?sessions&sort=-age&limit=2")))
            local p2 = ids(select(2, http("GET", "/status?sessions&sort=-age&limit=2&offset=2")))
            ngx.say("pages: ", #p1, " ", #p2, " ", p1[1] == all[1] and p1[2] == all[2] and p2[1] == all[3] and "in order" or "out of order")
            ngx.say("bad: ", (http("GET", "/status?sessions&sort=size")), " ", (http("GET", "/status?sessions&limit=5000")))
            for _, x in ipairs{a, b, c} do
                x:send_close(1000, "done")
                x:recv_frame()
            end
            ngx.sleep(0.1)
            st, body = http("GET", "/status?sessions")
            ngx.say("after: ", body:match('"total":%d+'))
            st, body = http("GET", "/status?sessions&state=ended&key=alpha")
            ngx.say("ended: ", body:match('"state":"ended","end":"client_close","close_codes":{"client":1000,"upstream":1000}') and "ok" or body)
--- response_body
200 "total":3,"unlisted":0,"offset":0,"limit":100
3 ids
fields ok
key=beta: "total":2 2
client=127.0.0.2: "total":0
client=127.0.0.1: "total":3
min_age=60: "total":0
max_age=60, upstream: "total":3
upstream=10.: "total":0
sort=key: alpha beta beta
sort=-key: beta beta alpha
pages: 2 1 in order
bad: 400 400
after: "total":0
ended: ok
--- no_error_log
[error]
[alert]



=== TEST 2: one session with its flight recorder: the frames each way, oldest first, with what became of them
--- proxy
        ws_proxy_flight_recorder 4;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(open("/proxy?k=rec"))
            c:send_text("second")
            c:recv_frame()
            -- the upstream does not answer pings
            c:send_frame{ opcode = 9, payload = "p", mask = true }
            c:send_text("third")
            c:recv_frame()
            c:send_text("fourth")
            c:recv_frame()
            local _, body = http("GET", "/status?sessions&key=rec")
            local id = ids(body)[1]
            local st, one = http("GET", "/status?session=" .. id)
            ngx.say(st, " ", one:match('"recorder":true') and "recorder on" or one)
            local cl = one:match('"client":%[(.-)%]')
            for op, len, fin, rsv1, action in cl:gmatch('"op":"(%w+)","len":(%d+),"fin":(%w+),"rsv1":(%w+),"action":"(%w+)"') do
                ngx.say("client ", op, " ", len, " ", fin, " ", rsv1, " ", action)
            end
            local up = one:match('"upstream":%[(.-)%]')
            local n = 0
            for op, len, action in up:gmatch('"op":"(%w+)","len":(%d+),"fin":%w+,"rsv1":%w+,"action":"(%w+)"') do
                n = n + 1
                if n == 4 then ngx.say("upstream ", op, " ", len, " ", action) end
            end
            ngx.say("upstream ", n)
            ngx.say(one:match('"t":%d+%.%d%d%d') and "times ok" or one)
            ngx.print((http("GET", "/status?session=1-1")), " ", select(2, http("GET", "/status?session=nope")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body
200 recorder on
client text 6 true false forwarded
client ping 1 true false forwarded
client text 5 true false forwarded
client text 6 true false forwarded
upstream text 11 forwarded
upstream 4
times ok
404 {"error":"no session nope"}
--- no_error_log
[error]
[alert]



=== TEST 2b: the recorder with a hook: what Lua did with each frame (dropped, rewritten, forwarded), a frame it injected
--- proxy
        ws_proxy_flight_recorder 8;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local p
            p = assert(proxy.new({
                on_frame = function(_, role, typ, payload)
                    if role == "client" and payload == "drop" then
                        return nil
                    end
                    if role == "client" and payload == "rewrite" then
                        p:send_frame("client", "text", "injected")
                        return "rewritten!"
                    end
                    return payload
                end,
            }))
            assert(p:connect("ws://127.0.0.1:" .. ngx.var.server_port .. "/up"))
            p:execute()
        }
--- client
            -- a frame Lua sends to the client travels with the upstream's
            local c = assert(open("/proxy?k=hook"))
            c:send_text("drop")
            c:send_text("rewrite")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
            local _, body = http("GET", "/status?sessions&key=hook")
            local _, one = http("GET", "/status?session=" .. ids(body)[1])
            ngx.say(one:match('"hook":true') and "hook" or one)
            for d in ("client upstream"):gmatch("%w+") do
                local l = one:match('"' .. d .. '":%[(.-)%]')
                for op, len, action in l:gmatch('"op":"(%w+)","len":(%d+),"fin":%w+,"rsv1":%w+,"action":"(%w+)"') do
                    ngx.say(d, " ", op, " ", len, " ", action)
                end
            end
            c:send_close(1000, "")
            c:recv_frame()
--- response_body
text:injected
text:echo rewritten!
hook
client text 2 forwarded
client text 4 dropped
client text 10 rewritten
upstream text 7 forwarded
upstream text 8 injected
upstream text 15 forwarded
--- no_error_log
[error]
[alert]



=== TEST 2c: the proxy's own frames are recorded as injected: its heartbeat pings to each peer, its close to each; the pong it consumed as dropped
--- proxy
        ws_proxy_flight_recorder 16;
        ws_proxy_ping_interval 150ms;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(open("/proxy?k=own"))
            ngx.sleep(0.25)
            local f = c:recv_frame()
            ngx.say("client got ", f.opcode, " ", f.payload:match("^ngx_ws_proxy ping") or f.payload)
            c:send_frame{ opcode = 10, payload = f.payload, mask = true }
            local _, body = http("GET", "/status?sessions&key=own")
            local id = ids(body)[1]
            ngx.say((http("POST", "/status?session=" .. id .. "&close&code=4001&reason=x")))
            repeat f = c:recv_frame() until not f or f.opcode == 8
            ngx.say("client got close ", f and f.code)
            c:send_close(4001, "")
            ngx.sleep(0.2)
            local _, one = http("GET", "/status?session=" .. id)
            for _, dir in ipairs({ "client", "upstream" }) do
                local seen = {}
                local list = one:match('"' .. dir .. '":%[(.-)%]')
                for op, len, action in list:gmatch('"op":"(%w+)","len":(%d+),"fin":%w+,"rsv1":%w+,"action":"(%w+)"') do
                    if action == "injected" or op == "pong" then
                        seen[op .. " " .. (op == "close" and len or "") .. " " .. action] = true
                    end
                end
                local t = {}
                for k in pairs(seen) do t[#t + 1] = k end
                table.sort(t)
                ngx.say(dir, ": ", table.concat(t, ", "))
            end
--- response_body
client got 9 ngx_ws_proxy ping
200
client got close 4001
client: close 3 injected, ping  injected, pong  dropped
upstream: close 3 injected, ping  injected
--- no_error_log
[error]
[alert]



=== TEST 3: close by id: the session gets the code and reason, the others are untouched; 403 without control, 400, 404
--- client
            local a = assert(open("/proxy?k=a"))
            local b = assert(open("/proxy?k=b"))
            local _, body = http("GET", "/status?sessions&key=a")
            local id = ids(body)[1]
            ngx.say("ro: ", (http("POST", "/status-ro?session=" .. id .. "&close")))
            ngx.say("bad code: ", (http("POST", "/status?session=" .. id .. "&close&code=1006")))
            ngx.say("unknown: ", (http("POST", "/status?session=" .. id .. "9&close")))
            ngx.say("GET: ", (http("GET", "/status?session=" .. id .. "&close")))
            local st, res = http("POST", "/status?session=" .. id .. "&close&code=4001&reason=gone%20now")
            ngx.say(st, " ", res)
            ngx.say("a got: ", ws.describe(a:recv_frame()))
            b:send_text("hi")
            ngx.say("b: ", ws.describe(b:recv_frame()))
            a:send_close(4001, "")
            ngx.sleep(0.1)
            _, body = http("GET", "/status?sessions&state=ended&key=a")
            ngx.say(body:match('"end":"proxy_close"') and "ended by the proxy" or body)
            st, res = http("DELETE", "/status?session=" .. ids(select(2, http("GET", "/status?sessions&key=b")))[1])
            ngx.say("DELETE: ", st, " ", res:match('"closed":true,"code":1000'))
            ngx.say("b got: ", ws.describe(b:recv_frame()))
--- response_body_like eval
qr/^ro: 403
bad code: 400
unknown: 404
GET: 405
200 \{"id":"\d+-\d+","closed":true,"code":4001\}

a got: close:4001:gone now
b: text:echo hi
ended by the proxy
DELETE: 200 "closed":true,"code":1000
b got: close:1000:
$/
--- error_log eval
qr/\[info\] .*ws_proxy: closing session \d+-\d+ with 4001, as the console asked/
--- no_error_log
[error]
[alert]



=== TEST 4: a full zone: sessions still run, the registry counts them as unlisted
--- http_config eval
$t::WsProxy::HttpConfig . q{
    ws_proxy_zone wsp 32k;
}
--- client
            local cs = {}
            for i = 1, 40 do
                cs[i] = assert(open("/proxy?k=full"))
            end
            local _, body = http("GET", "/status?sessions&limit=1000")
            local total = tonumber(body:match('"total":(%d+)'))
            local unlisted = tonumber(body:match('"unlisted":(%d+)'))
            ngx.say(total + unlisted == 40 and unlisted > 0 and "listed + unlisted = 40" or body)
            for i = 1, 40 do
                cs[i]:send_close(1000, "")
                cs[i]:recv_frame()
            end
            ngx.sleep(0.2)
            _, body = http("GET", "/status?sessions")
            ngx.say(body:match('"total":%d+,"unlisted":%d+'))
            -- ended entries make way for new sessions
            local c = assert(open("/proxy?k=full"))
            _, body = http("GET", "/status?sessions")
            ngx.say(body:match('"total":%d+,"unlisted":%d+'))
            c:send_close(1000, "")
            c:recv_frame()
--- response_body
listed + unlisted = 40
"total":0,"unlisted":0
"total":1,"unlisted":0
--- no_error_log
[error]
[alert]



=== TEST 5: a session ended by 1009 writes its recorder in one [info] line
--- proxy
        ws_proxy_flight_recorder 8;
        ws_proxy_client_max_frame_size 10;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(open("/proxy"))
            c:send_text("0123456789abcdef")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1009, "")
            ngx.sleep(0.2)
--- response_body_like eval
qr/^close:1009:/
--- error_log eval
qr/\[info\] .*ws_proxy: session ended by limit \(close from client 1009, from upstream -?\d+; -1: none\), flight recorder: client \(\d+ frames\) \[-\d+ms text 2 fin forwarded, .*\] upstream \(\d+ frames\) \[-\d+ms text 7 fin forwarded/
--- no_error_log
[error]
[alert]



=== TEST 6: a ping timeout writes the recorder too; a session that ends well does not
--- proxy
        ws_proxy_flight_recorder 8;
        ws_proxy_ping_interval 200ms;
        ws_proxy_ping_timeout 200ms;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(open("/proxy?k=ok"))
            c:send_close(1000, "")
            c:recv_frame()
            c = assert(open("/proxy?k=dead"))
            -- the client reads nothing: its pings go unanswered
            ngx.sleep(1)
            ngx.say("slept")
--- response_body
slept
--- grep_error_log eval
qr/session ended by \w+ \(.*?flight recorder/
--- grep_error_log_out eval
qr/^session ended by ping_timeout \(.*flight recorder\n$/
--- no_error_log
[error]
[alert]



=== TEST 7: Lua: ws_proxy.sessions(filter) and ws_proxy.close_session(id, code, reason); flight_recorder in new()
--- proxy
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local p = assert(proxy.new({ flight_recorder = 3 }))
            assert(p:connect("ws://127.0.0.1:" .. ngx.var.server_port .. "/up"))
            p:execute()
        }
--- client
            local proxy = require "resty.websocket.proxy"
            local a = assert(open("/proxy?k=lua1"))
            local b = assert(open("/proxy?k=lua2"))
            local list, total, unlisted = proxy.sessions({ key = "lua1" })
            ngx.say(#list, " ", total, " ", unlisted, " ", list[1].key, " ",
                    list[1].location, " ", list[1].state, " ",
                    tostring(list[1].recorder), " ", list[1].worker == ngx.worker.pid())
            list = proxy.sessions({ sort = "-key", limit = 1 })
            ngx.say(#list, " ", list[1].key)
            ngx.say(select(2, proxy.sessions({ sort = "bogus" })))
            ngx.say(select(2, proxy.close_session("1-1")))
            ngx.say(select(2, proxy.close_session(list[1].id, 1006)))
            local id = proxy.sessions({ key = "lua1" })[1].id
            ngx.say(proxy.close_session(id, 4002, "by lua"))
            ngx.say(ws.describe(a:recv_frame()))
            b:send_text("hi")
            ngx.say(ws.describe(b:recv_frame()))
            b:send_close(1000, "")
            b:recv_frame()
            a:send_close(4002, "")
            ngx.sleep(0.1)
            list = proxy.sessions({ key = "lua1", state = "ended" })
            ngx.say(list[1]["end"], " ", list[1].close_codes.client)
            ngx.say(pcall(proxy.new, { flight_recorder = 5000 }))
--- response_body_like eval
qr/^1 1 0 lua1 \/proxy open true true
1 lua2
bad filter: sort=bogus
no session 1-1
bad close code or reason: a code 1000 or 3000-4999, a UTF-8 reason of at most 123 bytes
true
close:4002:by lua
text:echo hi
proxy_close 4002
false.*flight_recorder must be an integer from 0 to 1024
$/
--- no_error_log
[error]
[alert]



=== TEST 8: nginx -t: ws_proxy_flight_recorder's range, ws_proxy_status's parameter
--- config
    location /a { ws_proxy_flight_recorder 0; }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid ws_proxy_flight_recorder "0": frames each way from 1 to 1024, or off



=== TEST 9: nginx -t: ws_proxy_status takes "control" or nothing
--- config
    location /s { ws_proxy_status controls; }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid parameter "controls": "control" or none



=== TEST 10: ws_proxy_flight_recorder off, and 1024, are accepted
--- config
    ws_proxy_flight_recorder 1024;
    location /a { ws_proxy_flight_recorder off; return 200 "ok\n"; }
--- request
GET /a
--- response_body
ok
