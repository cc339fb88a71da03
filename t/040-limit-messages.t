# vim:set ts=4 sts=4 sw=4 et ft=:

# Message rates (issue 26, item 1): ws_proxy_limit_message_zone and
# ws_proxy_limit_messages, as limit_req_zone and limit_req count requests,
# and the per-session form (rate= without a zone).  action=delay holds a
# sender's message at its first frame, reads nothing more from it until
# the bucket allows it, and loses, reorders or splits nothing, while the
# other direction flows; action=close ends the session with 1008 and
# $ws_proxy_end "limit"; a message counts once however fragmented, and
# pings and pongs do not count; heartbeats go on through a held-back
# session; the metrics; nginx -t's refusals.  Real clients at ten times
# the rate, over two workers: t/e2e/limit_messages.py.

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $Config = $t::WsProxy::HttpConfig . q{
    ws_proxy_limit_message_zone $arg_k zone=msgs:1m rate=10r/s;
    ws_proxy_limit_session_zone $binary_remote_addr zone=perip:1m;
    ws_proxy_zone wsmetrics 1m;

    log_format rate 'end: $ws_proxy_end';
};

# the upstream: echoes each data message whole with the time it came (ms
# since the session started), answers a ping and a close; ?push=n first
# sends n texts
our $Up = q{
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            local t0 = ngx.now()
            for i = 1, tonumber(ngx.var.arg_push or 0) do
                s:send_text("push " .. i)
            end
            local msg = ""
            while true do
                local f = s:recv_frame()
                if not f then
                    return
                end
                if f.opcode == 8 then
                    s:send_close(f.code, "bye")
                    return
                end
                if f.opcode == 9 then
                    s:send_frame{ opcode = 10, payload = f.payload }
                end
                if f.opcode < 3 then
                    msg = msg .. f.payload
                    if f.fin then
                        ngx.log(ngx.INFO, "upstream got ", msg)
                        ngx.update_time()
                        s:send_text(msg .. " @" .. math.floor((ngx.now() - t0)
                                                              * 1000))
                        msg = ""
                    end
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
        my $proxy = $block->can('proxy') ? $block->proxy : '';
        my $status = "    location /status { ws_proxy_status; }\n";
        $block->set_value("config", $Up . $status . <<"_EOC_");
    location /proxy {
        access_log logs/error.log rate;
$proxy
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            -- the echoes of n messages: "m1 m2 ...", and the time the
            -- upstream got the last one
            local function echoes(c, n)
                local got, at = {}, 0
                while #got < n do
                    local f, err = c:recv_frame()
                    if not f then
                        return nil, err
                    end
                    if f.opcode == 9 then
                        c:send_frame{ opcode = 10, payload = f.payload,
                                      mask = true }
                    elseif f.opcode == 1 and f.payload:find(" @") then
                        local m, t = f.payload:match("^(.-) @(%d+)\$")
                        got[#got + 1] = m
                        at = tonumber(t)
                    end
                end
                return table.concat(got, " "), at
            end
            local function bye(c)
                c:send_close(1000, "done")
                while true do
                    local f, err = c:recv_frame()
                    if not f or f.opcode == 8 then
                        return ws.describe(f, err)
                    end
                end
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

=== TEST 1: action=delay, the session's own rate: every message whole and in order, spaced by the rate
--- proxy
        ws_proxy_limit_messages rate=20r/s;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy"))
            local frames = {}
            for i = 1, 10 do
                frames[#frames + 1] = ws.build_frame{ opcode = 1, mask = true,
                                                      payload = "m" .. i }
            end
            -- one fragmented, with a ping between its frames
            frames[5] = ws.build_frame{ opcode = 1, fin = false, mask = true,
                                        payload = "m" }
                        .. ws.build_frame{ opcode = 9, mask = true,
                                           payload = "p" }
                        .. ws.build_frame{ opcode = 0, mask = true,
                                           payload = "5" }
            c.sock:send(table.concat(frames))
            local got, at = echoes(c, 10)
            ngx.say(got)
            -- 9 messages over the rate: 450 ms at 20 r/s
            ngx.say("spaced: ", at >= 400 and at < 1500 or at)
            ngx.say(bye(c))
--- response_body
m1 m2 m3 m4 m5 m6 m7 m8 m9 m10
spaced: true
close:1000:bye
--- no_error_log
[error]
[warn]



=== TEST 2: action=delay: the other direction is not held
--- proxy
        ws_proxy_limit_messages rate=5r/s;
        ws_proxy_pass ws://127.0.0.1:$server_port/up?push=20;
--- client
            local c = assert(ws.client("/proxy"))
            local frames = {}
            for i = 1, 5 do
                frames[i] = ws.build_frame{ opcode = 1, mask = true,
                                            payload = "m" .. i }
            end
            c.sock:send(table.concat(frames))
            local t0 = ngx.now()
            local pushes = 0
            while pushes < 20 do
                local f = assert(c:recv_frame())
                if f.payload:find("^push") then
                    pushes = pushes + 1
                end
            end
            ngx.update_time()
            ngx.say("pushes at once: ", ngx.now() - t0 < 0.5)
            local got, at = echoes(c, 5 - 1)
            ngx.say("held: ", at >= 500 or at)
            ngx.say(bye(c))
--- response_body
pushes at once: true
held: true
close:1000:bye
--- no_error_log
[error]



=== TEST 3: action=close: 1008 and a reason naming the limit to the sender, 1001 on, $ws_proxy_end limit, counted
--- proxy
        ws_proxy_limit_messages rate=1r/s burst=1 action=close;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy"))
            for i = 1, 3 do
                c:send_text("m" .. i)
            end
            local got = {}
            while true do
                local f, err = c:recv_frame()
                got[#got + 1] = ws.describe(f, err)
                if not f or f.opcode == 8 then
                    break
                end
            end
            ngx.say(table.concat(got, "\n"))
            c:send_close(1008)
--- response_body
close:1008:message rate limit
--- grep_error_log eval
qr/upstream got \w+/
--- grep_error_log_out
upstream got m1
upstream got m2
--- error_log eval
[qr/\[warn\] .*ws_proxy: client over its message rate of 1\.000 per second, closing with 1008/,
 qr/end: limit/]
--- no_error_log
[error]



=== TEST 4: a zone's key limits every session of the key as one; another key has a bucket of its own
--- proxy
        ws_proxy_limit_messages zone=msgs;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local a = assert(ws.client("/proxy?k=a"))
            local b = assert(ws.client("/proxy?k=a"))
            local other = assert(ws.client("/proxy?k=b"))
            ngx.update_time()
            local t0 = ngx.now()
            for i = 1, 5 do
                a:send_text("a" .. i)
                b:send_text("b" .. i)
                other:send_text("o" .. i)
            end
            ngx.say((echoes(other, 5)))
            ngx.update_time()
            -- 4 over 10 r/s: 0.4 s
            local t = ngx.now() - t0
            ngx.say("other key on its own: ", t >= 0.3 and t < 0.75 or t)
            ngx.say((echoes(a, 5)))
            ngx.say((echoes(b, 5)))
            ngx.update_time()
            -- 9 over 10 r/s: 0.9 s for the key's 10 messages
            t = ngx.now() - t0
            ngx.say("key a limited as one: ", t >= 0.8 and t < 1.6 or t)
            ngx.say(bye(a), " ", bye(b), " ", bye(other))
--- response_body
o1 o2 o3 o4 o5
other key on its own: true
a1 a2 a3 a4 a5
b1 b2 b3 b4 b5
key a limited as one: true
close:1000:bye close:1000:bye close:1000:bye
--- no_error_log
[error]



=== TEST 5: heartbeats through a held-back session: the pong behind held messages is no ping timeout
--- proxy
        ws_proxy_limit_messages rate=4r/s;
        ws_proxy_ping_interval 150ms;
        ws_proxy_ping_timeout 150ms;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy"))
            local frames = {}
            for i = 1, 8 do
                frames[i] = ws.build_frame{ opcode = 2, mask = true,
                                            payload = "m" .. i }
            end
            c.sock:send(table.concat(frames))
            -- echoes() answers the module's pings: each pong waits in the
            -- socket behind the held messages
            local got, at = echoes(c, 8)
            ngx.say(got)
            ngx.say("held over pings: ", at >= 1500 or at)
            ngx.say(bye(c))
--- response_body
m1 m2 m3 m4 m5 m6 m7 m8
held over pings: true
close:1000:bye
--- error_log
end: client_close
--- no_error_log
[error]
ping_timeout



=== TEST 6: from=upstream limits the upstream's messages, not the client's; metrics count the delays
--- proxy
        ws_proxy_limit_messages rate=10r/s from=upstream;
        ws_proxy_pass ws://127.0.0.1:$server_port/up?push=5;
--- client
            local c = assert(ws.client("/proxy"))
            local t0 = ngx.now()
            local n = 0
            while n < 5 do
                local f = assert(c:recv_frame())
                n = n + 1
            end
            ngx.update_time()
            ngx.say("pushes spaced: ", ngx.now() - t0 >= 0.35)
            ngx.say(bye(c))
            ngx.sleep(0.1)
            local res = ngx.location.capture("/status")
            ngx.say(res.body:match('ws_proxy_messages_delayed_total{key="/proxy",from="upstream"} %d+'))
            ngx.say(res.body:match('ws_proxy_messages_delayed_total{key="/proxy",from="client"} %d+'))
            ngx.say(res.body:match('ws_proxy_message_delay_seconds_total{key="/proxy",from="upstream"} 0%.%d+') and "seconds" or res.body)
--- response_body
pushes spaced: true
close:1000:bye
ws_proxy_messages_delayed_total{key="/proxy",from="upstream"} 4
ws_proxy_messages_delayed_total{key="/proxy",from="client"} 0
seconds
--- no_error_log
[error]



=== TEST 7: a close by a rate counts in ws_proxy_limits_total as message_rate
--- proxy
        ws_proxy_limit_messages zone=msgs action=close;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy?k=x"))
            for i = 1, 3 do
                c:send_text("m" .. i)
            end
            while true do
                local f = c:recv_frame()
                if not f or f.opcode == 8 then
                    ngx.say(ws.describe(f))
                    break
                end
            end
            c:send_close(1008)
            ngx.sleep(0.1)
            local res = ngx.location.capture("/status")
            ngx.say(res.body:match('ws_proxy_limits_total{key="/proxy",from="client",limit="message_rate"} %d+'))
            res = ngx.location.capture("/status?format=json")
            ngx.say(res.body:find('"message_rate":1', 1, true)
                    and "json: message_rate 1" or res.body)
--- response_body
close:1008:message rate limit
ws_proxy_limits_total{key="/proxy",from="client",limit="message_rate"} 1
json: message_rate 1
--- error_log
over the message rate of zone "msgs", closing with 1008
--- no_error_log
[error]



=== TEST 8: an empty key is not limited
--- proxy
        ws_proxy_limit_messages zone=msgs action=close;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy"))
            for i = 1, 20 do
                c:send_text("m" .. i)
            end
            local got = echoes(c, 20)
            ngx.say(#got > 0)
            ngx.say(bye(c))
--- response_body
true
close:1000:bye
--- no_error_log
[error]
[warn]



=== TEST 9: a limit at the http level applies to a location without one of its own
--- http_config eval
$::Config . q{
    ws_proxy_limit_messages rate=1r/s action=close;
}
--- proxy
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
--- client
            local c = assert(ws.client("/proxy"))
            for i = 1, 3 do
                c:send_text("m" .. i)
            end
            while true do
                local f, err = c:recv_frame()
                if not f or f.opcode == 8 then
                    ngx.say(ws.describe(f, err))
                    break
                end
            end
--- response_body
close:1008:message rate limit
--- no_error_log
[error]



=== TEST 10: from=both: a zone's key has one bucket for both senders; rate= one per sender
--- http_config eval
$::Config . q{
    ws_proxy_limit_message_zone $arg_k zone=both:1m rate=5r/s;
}
--- proxy
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local v = { rate = 5, from = "both" }
            if ngx.var.arg_k then
                v = { zone = "both", from = "both" }
            end
            local wp = assert(proxy.new({ limit_messages = v }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up?push=3"))
            wp:execute()
        }
--- client
            -- 3 messages of the client, 3 pushes and 3 echoes of the
            -- upstream: 9 in one bucket at 5/s take 1.6 s; 3 and 6 in
            -- two take 1 s
            for _, path in ipairs({ "/proxy?k=z", "/proxy" }) do
                ngx.update_time()
                local t0 = ngx.now()
                local c = assert(ws.client(path))
                for i = 1, 3 do
                    c:send_text("m" .. i)
                end
                local n = 0
                while n < 6 do
                    local f = assert(c:recv_frame())
                    n = n + 1
                end
                ngx.update_time()
                local t = ngx.now() - t0
                ngx.say(path, ": ", t >= 1.3 and "one bucket" or "two")
                c:send_close(1000)
            end
--- response_body
/proxy?k=z: one bucket
/proxy: two
--- no_error_log
[error]



=== TEST 11: Lua: the limit_messages option replaces the location's limit; false lifts it
--- proxy
        ws_proxy_limit_messages rate=1r/s action=close;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local opts = {}
            if ngx.var.arg_opt == "free" then
                opts.limit_messages = false
            elseif ngx.var.arg_opt == "rate" then
                opts.limit_messages = { rate = 20, from = "client" }
            end
            local wp = assert(proxy.new(opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            wp:execute()
        }
--- client
            local c = assert(ws.client("/proxy?opt=rate"))
            local frames = {}
            for i = 1, 10 do
                frames[i] = ws.build_frame{ opcode = 1, mask = true,
                                            payload = "m" .. i }
            end
            c.sock:send(table.concat(frames))
            local got, at = echoes(c, 10)
            ngx.say(got)
            ngx.say("spaced: ", at >= 400 and at < 1500 or at)
            ngx.say(bye(c))
            c = assert(ws.client("/proxy?opt=free"))
            c.sock:send(table.concat(frames))
            got, at = echoes(c, 10)
            ngx.say(got)
            ngx.say("at once: ", at < 300 or at)
            ngx.say(bye(c))
            c = assert(ws.client("/proxy"))
            c.sock:send(table.concat(frames))
            while true do
                local f, err = c:recv_frame()
                if not f or f.opcode == 8 then
                    ngx.say(ws.describe(f, err))
                    break
                end
            end
--- response_body
m1 m2 m3 m4 m5 m6 m7 m8 m9 m10
spaced: true
close:1000:bye
m1 m2 m3 m4 m5 m6 m7 m8 m9 m10
at once: true
close:1000:bye
close:1008:message rate limit
--- no_error_log
[error]



=== TEST 12: Lua: set_rate() from on_frame (a plan read from the first message) applies from the next message; false lifts it
--- proxy
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(self, role, typ, payload)
                    if role == "client" and payload == "plan:bronze" then
                        assert(self:set_rate({ rate = 2, action = "close" }))
                    elseif role == "client" and payload == "plan:gold" then
                        assert(self:set_rate(false))
                    end
                    return payload
                end,
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            -- after connect(), before execute(): the session's own
            assert(wp:set_rate(50))
            wp:execute()
        }
--- client
            local c = assert(ws.client("/proxy"))
            local frames = {}
            for i = 1, 6 do
                frames[i] = ws.build_frame{ opcode = 1, mask = true,
                                            payload = "m" .. i }
            end
            c.sock:send(table.concat(frames))
            local got, at = echoes(c, 6)
            ngx.say(got, " spaced: ", at >= 80 or at)
            c:send_text("plan:gold")
            ngx.say((echoes(c, 1)))
            c.sock:send(table.concat(frames))
            got, at = echoes(c, 6)
            ngx.say(got)
            c:send_text("plan:bronze")
            ngx.say((echoes(c, 1)))
            c.sock:send(table.concat(frames))
            while true do
                local f, err = c:recv_frame()
                if not f or f.opcode == 8 then
                    ngx.say(ws.describe(f, err))
                    break
                end
            end
--- response_body
m1 m2 m3 m4 m5 m6 spaced: true
plan:gold
m1 m2 m3 m4 m5 m6
plan:bronze
close:1008:message rate limit
--- error_log
client over its message rate of 2.000 per second, closing with 1008
--- no_error_log
[error]



=== TEST 13: Lua: the option's and set_rate()'s values are checked; a zone that does not exist is execute()'s error
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            for _, v in ipairs({ 0, -1, "x", { rate = 0 }, { rate = 1, from = "x" },
                                 { rate = 1, action = "drop" },
                                 { zone = "msgs", rate = 1 }, { burst = 1 },
                                 { zone = 1 }, { rate = 1, key = 2 } }) do
                local ok, err = pcall(proxy.new, { limit_messages = v })
                ngx.say(ok, " ", err)
            end
            local wp = proxy.new()
            ngx.say(pcall(wp.set_rate, wp, { rate = 1, burst = -1 }))
            ngx.say(wp:set_rate({ zone = "nope" }))
        }
    }
--- request
GET /t
--- response_body
false opts.limit_messages.rate must be a number of messages per second, > 0 and <= 1000000
false opts.limit_messages.rate must be a number of messages per second, > 0 and <= 1000000
false opts.limit_messages must be false, a number or a table { rate = ..., burst = ..., from = ..., action = ... }
false opts.limit_messages.rate must be a number of messages per second, > 0 and <= 1000000
false opts.limit_messages.from must be "client", "upstream" or "both"
false opts.limit_messages.action must be "delay" or "close"
false opts.limit_messages takes a zone or a rate, not both
false opts.limit_messages.rate must be a number of messages per second, > 0 and <= 1000000
false opts.limit_messages.zone must be a string (the name of a ws_proxy_limit_message_zone)
false opts.limit_messages.key must be a string
falserate.burst must be a number >= 0 and <= 1000000
true
--- no_error_log
[error]



=== TEST 14: Lua: a zone that does not exist is execute()'s error; a zone and key of Lua's
--- proxy
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                limit_messages = { zone = ngx.var.arg_zone, key = "tenant-1",
                                   action = "close" },
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
--- client
            local c = assert(ws.client("/proxy?zone=nope"))
            ngx.say(ws.describe(c:recv_frame()))
            c = assert(ws.client("/proxy?zone=msgs"))
            for i = 1, 3 do
                c:send_text("m" .. i)
            end
            while true do
                local f, err = c:recv_frame()
                if not f or f.opcode == 8 then
                    ngx.say(ws.describe(f, err))
                    break
                end
            end
--- response_body
close:1011:Internal Error
close:1008:message rate limit
--- error_log
execute: nil unknown ws_proxy_limit_message_zone "nope"
over the message rate of zone "msgs", closing with 1008



=== TEST 15: nginx -t: an unknown zone
--- config
    location /proxy {
        ws_proxy_limit_messages zone=nope;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
unknown ws_proxy_limit_message_zone "nope" in "ws_proxy_limit_messages"



=== TEST 16: nginx -t: a session zone is not a message zone, nor the other way round
--- config
    location /proxy {
        ws_proxy_limit_messages zone=perip;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
unknown ws_proxy_limit_message_zone "perip" in "ws_proxy_limit_messages"



=== TEST 17: nginx -t: ws_proxy_limit_sessions on a message zone
--- config
    location /proxy {
        ws_proxy_limit_sessions zone=msgs 2;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
unknown ws_proxy_limit_session_zone "msgs" in "ws_proxy_limit_sessions"



=== TEST 18: nginx -t: a message zone needs a rate
--- http_config
    ws_proxy_limit_message_zone $arg_k zone=z:1m 10;
--- config
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid rate "10": rate=<n>r/s or r/m



=== TEST 19: nginx -t: a rate in another unit
--- config
    location /proxy {
        ws_proxy_limit_messages rate=10r/h;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid rate "rate=10r/h": rate=<n>r/s or r/m



=== TEST 20: nginx -t: zone= and rate= together, or neither
--- config
    location /proxy {
        ws_proxy_limit_messages zone=msgs rate=1r/s;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_limit_messages" needs zone=<name> or rate=<n>r/s, not both



=== TEST 21: nginx -t: two limits for one sender
--- config
    location /proxy {
        ws_proxy_limit_messages rate=10r/s from=both;
        ws_proxy_limit_messages zone=msgs from=upstream;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_limit_messages" directive is duplicate: one limit per sender



=== TEST 22: nginx -t: an unknown parameter, a bad burst
--- config
    location /proxy {
        ws_proxy_limit_messages rate=10r/s action=drop;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid parameter "action=drop"
