# vim:set ts=4 sts=4 sw=4 et ft=:

# Session caps per key (issue 26, item 2): ws_proxy_limit_session_zone and
# ws_proxy_limit_sessions, as limit_conn_zone and limit_conn count
# connections.  The session beyond n open ones for a key gets 429 before
# the upstream is dialled (the upstream logs each session it gets: "upstream
# session"); a session that ends, whatever way, frees its slot at once; an
# empty key is not counted; Lua's limit_sessions option; the [warn] line;
# the metrics counter; nginx -t's refusals.  Caps over two workers:
# t/e2e/limit_sessions.py.

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $Config = $t::WsProxy::HttpConfig . q{
    ws_proxy_limit_session_zone $binary_remote_addr zone=perip:1m;
    ws_proxy_limit_session_zone $http_x_tenant zone=tenant:1m;
    ws_proxy_limit_session_zone $arg_k zone=bykey:32k;

    log_format lim 'limit: $status $ws_proxy_limit_sessions_status';
};

# the upstream: logs each session it gets, echoes text, answers a close
our $Up = q{
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            ngx.log(ngx.INFO, "upstream session ", ngx.var.arg_n or "")
            while true do
                local f = s:recv_frame()
                if not f then
                    return
                end
                if f.opcode == 8 then
                    s:send_close(f.code, "bye")
                    return
                end
                s:send_text("echo " .. f.payload)
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
        my $proxy = $block->can('proxy') ? $block->proxy : '';
        my $status = $block->can('status_page') && defined $block->status_page
                     ? "    location /status { ws_proxy_status; }\n" : '';
        $block->set_value("config", $Up . $status . <<"_EOC_");
    location /proxy {
        access_log logs/error.log lim;
$proxy
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local function open(path, h)
                local c, err, r = ws.client(path, { headers = h })
                if not c then
                    return nil, err, r
                end
                c:send_text("hi")
                local f = c:recv_frame()
                if not f or f.payload ~= "echo hi" then
                    return nil, "no echo"
                end
                return c
            end
            local function bye(c)
                c:send_close(1000, "done")
                return ws.describe(c:recv_frame())
            end
@{[ $block->client ]}
        }
    }
_EOC_
    }
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ws_proxy_pass: two sessions pass, the third gets 429 without reaching the upstream
--- proxy
        ws_proxy_limit_sessions zone=perip 2;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c1 = assert(open("/proxy"))
            local c2 = assert(open("/proxy"))
            local c3, err, r = open("/proxy")
            ngx.say("third: ", err, " ", r and r.status_line)
            ngx.say(bye(c1))
            ngx.say(bye(c2))
--- response_body
third: status 429 HTTP/1.1 429 Too Many Requests
close:1000:bye
close:1000:bye
--- grep_error_log eval
qr/upstream session|session refused|limit: \d+ \w+/
--- grep_error_log_out
upstream session
upstream session
session refused
limit: 429 REJECTED
limit: 101 PASSED
limit: 101 PASSED
--- error_log eval
qr/\[warn\] .*ws_proxy: too many sessions for key "\\x7f\\x00\\x00\\x01" in zone "perip" \(limit 2\), session refused/
--- no_error_log
[error]



=== TEST 2: a closed session frees its slot at once: the next one is admitted right away
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            for i = 1, 5 do
                local c, err = open("/proxy")
                if not c then
                    ngx.say(i, ": ", err)
                    return
                end
                local r = bye(c)
                -- the proxy's session ended before the client got the reply
                c.sock:close()
            end
            ngx.say("five in a row")
            local c1 = assert(open("/proxy"))
            local c2, err = open("/proxy")
            ngx.say("while one is open: ", err)
            ngx.say(bye(c1))
--- response_body
five in a row
while one is open: status 429
close:1000:bye
--- grep_error_log eval
qr/upstream session/
--- grep_error_log_out
upstream session
upstream session
upstream session
upstream session
upstream session
upstream session
--- no_error_log
[error]



=== TEST 3: a session that ends by a client abort or a violation frees its slot
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            -- the client goes away without a close frame
            local c = assert(open("/proxy"))
            c.sock:close()
            ngx.sleep(0.1)
            c = assert(open("/proxy"))
            ngx.say("after an abort: admitted")
            -- a protocol violation (RSV1 without an extension): 1002
            c:send_frame{ opcode = 1, rsv = 4, payload = "x" }
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1002, "")
            c.sock:close()
            ngx.sleep(0.1)
            c = assert(open("/proxy"))
            ngx.say("after a violation: admitted")
            ngx.say(bye(c))
--- response_body
after an abort: admitted
close:1002:rsv bits set
after a violation: admitted
close:1000:bye
--- no_error_log
[error]
session refused



=== TEST 4: an empty key is not counted; a key is counted on its own
--- proxy
        ws_proxy_limit_sessions zone=tenant 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local a = assert(open("/proxy"))
            local b = assert(open("/proxy"))
            local c = assert(open("/proxy"))
            ngx.say("three without X-Tenant")
            local t1 = assert(open("/proxy", { "X-Tenant: acme" }))
            local t2 = assert(open("/proxy", { "X-Tenant: other" }))
            local _, err = open("/proxy", { "X-Tenant: acme" })
            ngx.say("a second acme: ", err)
            for _, s in ipairs({ a, b, c, t1, t2 }) do
                bye(s)
            end
--- response_body
three without X-Tenant
a second acme: status 429
--- error_log
too many sessions for key "acme" in zone "tenant" (limit 1), session refused
--- grep_error_log eval
qr/limit: \d+ \w+/
--- grep_error_log_out
limit: 429 REJECTED
limit: 101 PASSED
limit: 101 PASSED
limit: 101 PASSED
limit: 101 PASSED
limit: 101 PASSED
--- no_error_log
[error]



=== TEST 5: ws_proxy_limit_sessions_status and _log_level; a key's control bytes escaped in the line
--- proxy
        ws_proxy_limit_sessions zone=bykey 1;
        ws_proxy_limit_sessions_status 503;
        ws_proxy_limit_sessions_log_level error;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(open("/proxy?k=a%0Ab%22c%C3%A9"))
            local _, err = open("/proxy?k=a%0Ab%22c%C3%A9")
            ngx.say(err)
            ngx.say(bye(c))
--- response_body
status 503
close:1000:bye
--- error_log eval
qr/\[error\] .*ws_proxy: too many sessions for key "a%0Ab%22c%C3%A9" in zone "bykey" \(limit 1\), session refused/
--- no_error_log
[warn]



=== TEST 6: a key's bytes outside printable ASCII are \xNN in the line, so no client writes a line of its own
--- proxy
        ws_proxy_limit_sessions zone=tenant 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local h = { "X-Tenant: a\tb\127\195\169" }
            local c = assert(open("/proxy", h))
            local _, err = open("/proxy", h)
            ngx.say(err)
            ngx.say(bye(c))
--- response_body
status 429
close:1000:bye
--- error_log
too many sessions for key "a\x09b\x7f\xc3\xa9" in zone "tenant"
--- no_error_log
[error]



=== TEST 7: Lua: the location's cap is connect()'s default; the refused session gets 429, connect() nil and the reason
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/up")
            if not ok then
                ngx.log(ngx.INFO, "connect: ", err)
                return
            end
            wp:execute()
        }
--- client
            local c = assert(open("/proxy"))
            local _, err, r = open("/proxy")
            ngx.say(err, " ", r.headers["content-length"])
            ngx.say(bye(c))
            c = assert(open("/proxy"))
            ngx.say("then admitted")
            ngx.say(bye(c))
--- response_body
status 429 0
close:1000:bye
then admitted
close:1000:bye
--- grep_error_log eval
qr/upstream session|connect: [^,]*|limit: \d+ \w+/
--- grep_error_log_out
upstream session
connect: too many sessions for key "\x7f\x00\x00\x01" in zone "perip" (limit 1)
limit: 429 REJECTED
limit: 101 PASSED
upstream session
limit: 101 PASSED
--- no_error_log
[error]



=== TEST 8: Lua's limit_sessions option: its own zone, cap and key; false lifts the location's cap
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local opts = {}
            if ngx.var.arg_plan == "free" then
                opts.limit_sessions = false
            elseif ngx.var.arg_plan then
                opts.limit_sessions = {
                    { zone = "tenant", n = 2, key = "plan-" .. ngx.var.arg_plan },
                }
            end
            local wp = assert(proxy.new(opts))
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/up")
            if not ok then
                ngx.log(ngx.INFO, "connect: ", err)
                return
            end
            wp:execute()
        }
--- client
            local all = {}
            for i = 1, 2 do
                all[#all + 1] = assert(open("/proxy?plan=gold"))
            end
            local _, err = open("/proxy?plan=gold")
            ngx.say("a third gold: ", err)
            all[#all + 1] = assert(open("/proxy?plan=silver"))
            ngx.say("silver: admitted")
            for i = 1, 3 do
                all[#all + 1] = assert(open("/proxy?plan=free"))
            end
            ngx.say("three free: admitted")
            all[#all + 1] = assert(open("/proxy"))
            _, err = open("/proxy")
            ngx.say("the location's cap: ", err)
            for _, c in ipairs(all) do
                bye(c)
            end
--- response_body
a third gold: status 429
silver: admitted
three free: admitted
the location's cap: status 429
--- error_log
connect: too many sessions for key "plan-gold" in zone "tenant" (limit 2)
connect: too many sessions for key "\x7f\x00\x00\x01" in zone "perip" (limit 1)
--- no_error_log
[error]



=== TEST 9: Lua: connect_upstream() alone (Kong's order) returns the refusal and sends nothing; the handler answers
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                                                .. ngx.var.server_port .. "/up")
            if not ok then
                ngx.log(ngx.INFO, "connect_upstream: ", err)
                -- a second call is refused the same, without a second count
                local ok2, err2 = wp:connect_upstream("ws://127.0.0.1:"
                                                .. ngx.var.server_port .. "/up")
                ngx.log(ngx.INFO, "again: ", err2)
                return ngx.exit(429)
            end
            assert(wp:connect_client())
            wp:execute()
        }
--- client
            local c = assert(open("/proxy"))
            local _, err = open("/proxy")
            ngx.say(err)
            ngx.say(bye(c))
--- response_body
status 429
close:1000:bye
--- grep_error_log eval
qr/session refused|connect_upstream: [^,]*|again: [^,]*/
--- grep_error_log_out
session refused
connect_upstream: too many sessions for key "\x7f\x00\x00\x01" in zone "perip" (limit 1)
again: session refused by ws_proxy_limit_sessions
--- no_error_log
[error]



=== TEST 10: Lua: a zone that does not exist is connect()'s error, nothing is counted
--- proxy
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                limit_sessions = { zone = "nope", n = 1 } }))
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/up")
            ngx.log(ngx.INFO, "connect: ", err)
            return ngx.exit(500)
        }
--- client
            local _, err = open("/proxy")
            ngx.say(err)
--- response_body
status 500
--- grep_error_log eval
qr/connect: [^,]*|upstream session/
--- grep_error_log_out
connect: unknown ws_proxy_limit_session_zone "nope"
--- no_error_log
[error]
session refused



=== TEST 11: Lua: the option's values are checked by new()
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            for _, v in ipairs({
                true, "perip", {}, { zone = "perip" }, { zone = "perip", n = 0 },
                { zone = "perip", n = 1.5 }, { zone = "perip", n = 65536 },
                { zone = 1, n = 1 }, { zone = "", n = 1 },
                { zone = "perip", n = 1, key = 5 }, { { zone = "perip" } },
                { zone = "perip", n = 1 }, { { zone = "perip", n = 1 } },
                false,
            }) do
                local ok, err = pcall(proxy.new, { limit_sessions = v })
                ngx.say(ok and "ok" or err)
            end
        }
    }
--- response_body
opts.limit_sessions must be false, a table { zone = ..., n = ... } or a list of them
opts.limit_sessions must be false, a table { zone = ..., n = ... } or a list of them
opts.limit_sessions must be false, a table { zone = ..., n = ... } or a list of them
opts.limit_sessions.n must be an integer from 1 to 65535
opts.limit_sessions.n must be an integer from 1 to 65535
opts.limit_sessions.n must be an integer from 1 to 65535
opts.limit_sessions.n must be an integer from 1 to 65535
opts.limit_sessions.zone must be a string (the name of a ws_proxy_limit_session_zone)
opts.limit_sessions.zone must be a string (the name of a ws_proxy_limit_session_zone)
opts.limit_sessions.key must be a string
opts.limit_sessions.n must be an integer from 1 to 65535
ok
ok
ok
--- no_error_log
[error]



=== TEST 12: a refusal counts in ws_proxy_status under the session's key (ws_proxy_zone_key)
--- http_config eval
$::Config . q{
    ws_proxy_zone wsp 64k;
}
--- proxy
        ws_proxy_zone_key "tenant-$http_x_tenant";
        ws_proxy_limit_sessions zone=tenant 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local h = { "X-Tenant: acme" }
            local c = assert(open("/proxy", h))
            for i = 1, 3 do
                local _, err = open("/proxy", h)
                ngx.say(err)
            end
            ngx.say(bye(c))
            local r = ngx.location.capture("/status", { args = "format=json" })
            ngx.say(r.body:match('"tenant%-acme":{"sessions_open":0,'
                                 .. '"sessions_total":1,'
                                 .. '"sessions_refused":%d+'))
            r = ngx.location.capture("/status")
            ngx.print(r.body:match("# HELP ws_proxy_sessions_refused_total[^\n]*\n"
                                   .. "# TYPE[^\n]*\n"))
            ngx.say(r.body:match('ws_proxy_sessions_refused_total{key="tenant%-acme"} %d+'))
--- status_page
yes
--- response_body
status 429
status 429
status 429
close:1000:bye
"tenant-acme":{"sessions_open":0,"sessions_total":1,"sessions_refused":3
# HELP ws_proxy_sessions_refused_total WebSocket sessions refused at the handshake by ws_proxy_limit_sessions (too many open sessions for a key).
# TYPE ws_proxy_sessions_refused_total counter
ws_proxy_sessions_refused_total{key="tenant-acme"} 3
--- no_error_log
[error]



=== TEST 13: several caps in one location: the first that refuses gives back what the others took
--- proxy
        ws_proxy_limit_sessions zone=perip 3;
        ws_proxy_limit_sessions zone=tenant 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local a = assert(open("/proxy", { "X-Tenant: a" }))
            local _, err = open("/proxy", { "X-Tenant: a" })
            ngx.say("a second a: ", err)
            -- perip holds only a's slot: two more fit
            local b = assert(open("/proxy", { "X-Tenant: b" }))
            local c = assert(open("/proxy", { "X-Tenant: c" }))
            _, err = open("/proxy", { "X-Tenant: d" })
            ngx.say("a fourth by address: ", err)
            bye(a) bye(b) bye(c)
--- response_body
a second a: status 429
a fourth by address: status 429
--- error_log
too many sessions for key "a" in zone "tenant" (limit 1)
too many sessions for key "\x7f\x00\x00\x01" in zone "perip" (limit 3)
--- no_error_log
[error]



=== TEST 14: the location's caps are inherited from the server level
--- http_config eval
$::Config . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT;
        ws_proxy_limit_sessions zone=perip 1;

        location /proxy {
            ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_SERVER_PORT/up;
        }
    }
}
--- proxy
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy",
                             { port = $TEST_NGINX_TLS_PORT }))
            local _, err = ws.client("/proxy", { port = $TEST_NGINX_TLS_PORT })
            ngx.say(err)
            bye(c)
--- response_body
status 429
--- no_error_log
[error]



=== TEST 15: nginx -t: an unknown zone
--- config
    location /proxy {
        ws_proxy_limit_sessions zone=nope 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
unknown ws_proxy_limit_session_zone "nope" in "ws_proxy_limit_sessions"



=== TEST 16: nginx -t: a zone without a size
--- http_config
    ws_proxy_limit_session_zone $binary_remote_addr zone=z;
--- config
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid zone size "zone=z": zone=<name>:<size>



=== TEST 17: nginx -t: n = 0
--- http_config eval
$::Config
--- config
    location /proxy {
        ws_proxy_limit_sessions zone=perip 0;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid number of sessions "0": at least 1



=== TEST 18: nginx -t: a zone too small
--- http_config
    ws_proxy_limit_session_zone $binary_remote_addr zone=z:4k;
--- config
--- must_die
--- allowed_levels: [emerg]
--- error_log
zone "z" is too small



=== TEST 19: nginx -t: a limit zone may not take ws_proxy_zone's name
--- http_config
    ws_proxy_zone m 64k;
    ws_proxy_limit_session_zone $binary_remote_addr zone=m:64k;
--- config
--- must_die
--- allowed_levels: [emerg]
--- error_log
the shared memory zone "m" is already declared for a different use



=== TEST 20: nginx -t: the status is from 400 to 599
--- http_config eval
$::Config
--- config
    location /proxy {
        ws_proxy_limit_sessions_status 200;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
value must be between 400 and 599



=== TEST 21: nginx -t: the same zone twice in a location
--- http_config eval
$::Config
--- config
    location /proxy {
        ws_proxy_limit_sessions zone=perip 1;
        ws_proxy_limit_sessions zone=perip 2;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_limit_sessions" directive is duplicate



=== TEST 22: Lua: connect_client() first (the client's 101 before the upstream): a refused session gets the status, not a 101
--- proxy
        ws_proxy_limit_sessions zone=perip 1;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_client()
            if not ok then
                ngx.log(ngx.INFO, "connect_client: ", err)
                return
            end
            assert(wp:connect_upstream("ws://127.0.0.1:"
                                       .. ngx.var.server_port .. "/up"))
            wp:execute()
        }
--- client
            local c = assert(open("/proxy"))
            local _, err = open("/proxy")
            ngx.say(err)
            ngx.say(bye(c))
--- response_body
status 429
close:1000:bye
--- grep_error_log eval
qr/upstream session|connect_client: [^,]*/
--- grep_error_log_out
upstream session
connect_client: too many sessions for key "\x7f\x00\x00\x01" in zone "perip" (limit 1)
--- no_error_log
[error]



=== TEST 23: a long key is cut in the line, after its last whole escape
--- proxy
        ws_proxy_limit_sessions zone=tenant 1;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local h = { "X-Tenant: " .. string.rep("\195\169", 100) }
            local c = assert(open("/proxy", h))
            local _, err = open("/proxy", h)
            ngx.say(err)
            ngx.say(bye(c))
--- response_body
status 429
close:1000:bye
--- error_log eval
qr/too many sessions for key "(\\xc3\\xa9){15}\\xc3\.\.\." in zone "tenant" \(limit 1\), session refused/
--- no_error_log
[error]
