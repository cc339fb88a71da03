# vim:set ts=4 sts=4 sw=4 et ft=:

# Liveness: why a session ended ($ws_proxy_end, stats().ended_by), the idle
# timeout and the module's own heartbeat, with raw peers (t/WsRaw.pm's
# sections, plus `proxy_conf`: directives for the proxy's location).  The
# proxy logs "execute: <ok> <err>" and then "end: <$ws_proxy_end>
# <stats().ended_by>".

use lib '.';
use t::WsRaw;

plan 'no_plan';

our $Recorder = $t::WsRaw::Recorder;

# an upstream that answers pings, logs what it gets, echoes data
our $Ponger = <<'_EOC_';
                while true do
                    local f, err = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                    if not f then
                        break
                    end
                    if f.opcode == 0x9 then
                        s:send_frame{ opcode = 0xa, payload = f.payload }
                    elseif f.opcode == 0x8 then
                        s:send_close(f.code, f.reason)
                        break
                    elseif f.opcode <= 0x2 then
                        s:send_frame{ opcode = f.opcode, payload = f.payload }
                    end
                end
_EOC_

# runs before t::WsRaw's preprocessor (the last added runs first), which
# leaves a block with a config alone
add_block_preprocessor(sub {
    my $block = shift;

    return if !defined $block->client;

    my $opts = $block->proxy_opts // '{}';
    my $conf = $block->proxy_conf // '';
    my $upstream = $block->upstream // $Recorder;
    $upstream = $Ponger if $upstream =~ /^\s*ponger\s*$/;
    my $client = $block->client;

    $block->set_value("config", <<"_EOC_");
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
$upstream
        }
    }

    location /proxy {
        $conf
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new($opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            ngx.log(ngx.INFO, "end: ", ngx.var.ws_proxy_end, " ",
                    wp:stats().ended_by)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
$client
        }
    }
_EOC_

    $block->set_value("no_error_log", "[error]\n[alert]\n")
        if !defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the client closes
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "bye")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:hi
close:1000:bye
--- error_log
execute: true nil
end: client_close client_close



=== TEST 2: the upstream closes
--- upstream
            s:send_close(1000, "server")
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(s:recv_frame()))
--- client
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1000:server
error: closed
--- error_log
execute: true nil
end: upstream_close upstream_close



=== TEST 3: a protocol violation
--- client
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1002:rsv bits set
--- error_log
end: violation violation



=== TEST 4: a limit
--- proxy_opts
{ client_max_frame_size = 4 }
--- client
            c:send_text("too long")
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
--- response_body
close:1009:Payload Too Large
--- error_log
end: limit limit



=== TEST 5: the client goes away without a close frame
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c.sock:close()
            ws.sleep(0.2)
--- response_body
text:hi
--- error_log
end: client_close client_close



=== TEST 6: idle: the directive, no data frame either way
--- proxy_conf
ws_proxy_idle_timeout 200ms;
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:hi
close:1001:idle timeout
error: closed
--- error_log
upstream got: close:1001:idle timeout
no data frame for 200 ms, closing
execute: true nil
end: idle idle



=== TEST 7: idle: the option wins; pings do not count as data
--- proxy_conf
ws_proxy_idle_timeout 60s;
--- proxy_opts
{ idle_timeout = require("wstest").ms(300) }
--- client
            for i = 1, 4 do
                c:send_frame{ opcode = 9, payload = "p" .. i }
                ws.sleep(0.05)
            end
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:idle timeout
error: closed
--- error_log
upstream got: ping:p4
upstream got: close:1001:idle timeout
execute: true nil
end: idle idle



=== TEST 8: a client that never answers the module's ping: dropped
--- proxy_opts
{ ping_interval = require("wstest").ms(100),
  ping_timeout = require("wstest").ms(150) }
--- upstream
ponger
--- client
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
ping:ngx_ws_proxy ping 1
error: closed
--- error_log eval
[
qr/upstream got: close:1001:client did not answer a ping/,
qr/ws_proxy: client did not answer a ping within \d+ ms/,
qr/execute: nil client did not answer a ping within \d+ ms/,
qr/end: ping_timeout ping_timeout/,
]
--- no_error_log
upstream got: pong
[error]
[alert]



=== TEST 9: an upstream that never answers: the client gets 1001
--- proxy_opts
{ ping_interval = require("wstest").ms(100),
  ping_timeout = require("wstest").ms(150) }
--- upstream
            while true do
                local f, err = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                if not f then
                    break
                end
            end
--- client
            local f = c:recv_frame()
            while f and f.opcode == 9 do
                c:send_frame{ opcode = 10, payload = f.payload }
                f = c:recv_frame()
            end
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:upstream did not answer a ping
error: closed
--- error_log eval
[
qr/upstream got: ping:ngx_ws_proxy ping 1/,
qr/execute: nil upstream did not answer a ping within \d+ ms/,
qr/end: ping_timeout ping_timeout/,
]
--- no_error_log
upstream got: pong
[error]
[alert]



=== TEST 10: a client that answers late, within ping_timeout; the hook never sees the module's pongs
--- proxy_opts
{ ping_interval = require("wstest").ms(100),
  ping_timeout = require("wstest").ms(400),
  on_frame = function(_, role, typ, payload)
      ngx.log(ngx.INFO, "hook saw ", typ, " from ", role)
      return payload
  end }
--- upstream
ponger
--- client
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            ws.sleep(0.2)
            c:send_frame{ opcode = 10, payload = f.payload }
            ws.sleep(0.2)
            c:send_text("still here")
            f = c:recv_frame()
            while f and f.opcode == 9 do
                c:send_frame{ opcode = 10, payload = f.payload }
                f = c:recv_frame()
            end
            ngx.say(ws.describe(f))
            c:send_close(1000, "bye")
            f = c:recv_frame()
            while f and f.opcode == 9 do
                f = c:recv_frame()
            end
            ngx.say(ws.describe(f))
--- response_body
ping:ngx_ws_proxy ping 1
text:still here
close:1000:bye
--- error_log
upstream got: text:still here
hook saw text from client
execute: true nil
end: client_close client_close
--- no_error_log
upstream got: pong
hook saw pong
[error]
[alert]



=== TEST 11: session_timeout: both peers get 1008 "session expired"
--- proxy_conf
ws_proxy_session_timeout 60s;
--- proxy_opts
{ session_timeout = require("wstest").ms(200) }
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:hi
close:1008:session expired
error: closed
--- error_log
upstream got: close:1008:session expired
execute: true nil
end: session_timeout session_timeout



=== TEST 12: set_deadline() from the hook: a later call moves the deadline
--- proxy_conf
ws_proxy_session_timeout 60s;
--- proxy_opts
{ on_frame = function(self, role, typ, payload)
      local ms = require("wstest").ms
      if payload == "a" then
          assert(self:set_deadline(ms(100) / 1000))
      elseif payload == "b" then
          assert(self:set_deadline(ms(500) / 1000, 4000, "token expired"))
      end
      return payload
  end }
--- client
            c:send_text("a")
            c:send_text("b")
            ws.sleep(0.25)
            c:send_text("c")
            for i = 1, 3 do
                ngx.say(ws.describe(c:recv_frame()))
            end
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:a
text:b
text:c
close:4000:token expired
error: closed
--- error_log
upstream got: close:4000:token expired
execute: true nil
end: session_timeout session_timeout



=== TEST 13: ws_proxy_pass: idle timeout from the directive, $ws_proxy_end
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f, err = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                if not f then
                    break
                end
                if f.opcode == 0x8 then
                    s:send_close(f.code, f.reason)
                    break
                end
                s:send_frame{ opcode = f.opcode, payload = f.payload }
            end
        }
    }

    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port/upstream;
        ws_proxy_idle_timeout 200ms;
        log_by_lua_block {
            ngx.log(ngx.INFO, "end: ", ngx.var.ws_proxy_end)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
text:hi
close:1001:idle timeout
error: closed
--- error_log
upstream got: close:1001:idle timeout
end: idle
--- no_error_log
[error]
[alert]



=== TEST 14: the liveness and drain options of new() are checked like the other ms options
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local cases = {
                { idle_timeout = 0 },
                { ping_interval = -1 },
                { ping_timeout = "x" },
                { session_timeout = 0 / 0 },
                { drain_time = 0 },
                { drain_time = "2s" },
                { drain_time = 2 ^ 31 },
            }
            for _, opts in ipairs(cases) do
                local ok, err = pcall(proxy.new, opts)
                ngx.say(ok, " ", err)
            end
            ngx.say(type(proxy.new({ drain_time = 1 })), " ",
                    type(proxy.new({ drain_time = 2 ^ 31 - 1 })))
        }
    }
--- response_body
false opts.idle_timeout must be a number >= 1
false opts.ping_interval must be a number >= 1
false opts.ping_timeout must be a number >= 1
false opts.session_timeout must be a number >= 1
false opts.drain_time must be a number >= 1
false opts.drain_time must be a number >= 1
false opts.drain_time must be a number <= 2147483647
table table
--- no_error_log
[error]
[alert]



=== TEST 15: three sessions at once with different idle timeouts: each closes at its own time (the worker's liveness tree)
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f, err = s:recv_frame()
                if not f then
                    break
                end
                if f.opcode == 0x8 then
                    s:send_close(f.code, f.reason)
                    break
                end
                s:send_frame{ opcode = f.opcode, payload = f.payload }
            end
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local ms = require("wstest").ms(tonumber(ngx.var.arg_idle))
            local wp = assert(proxy.new({ idle_timeout = ms }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err, " ",
                    ngx.var.ws_proxy_end)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            -- opened longest first: the tree's order is not the order of
            -- the sessions
            local idle = { 900, 300, 600 }
            local cs, at = {}, {}
            for i, t in ipairs(idle) do
                cs[i] = assert(ws.client("/proxy?idle=" .. t))
                cs[i]:send_text("hi " .. i)
                assert(cs[i]:recv_frame().payload == "hi " .. i)
            end
            local t0 = ngx.now()
            local done = 0
            local threads = {}
            for i, c in ipairs(cs) do
                threads[i] = ngx.thread.spawn(function()
                    local f = c:recv_frame()
                    ngx.update_time()
                    at[i] = ngx.now() - t0
                    c:send_close(f.code, f.reason)
                    return ws.describe(f)
                end)
            end
            for i = 1, #cs do
                local _, d = ngx.thread.wait(threads[i])
                ngx.say(i, " ", d)
            end
            ngx.say("order: ", at[2] < at[3] and at[3] < at[1])
        }
    }
--- response_body
1 close:1001:idle timeout
2 close:1001:idle timeout
3 close:1001:idle timeout
order: true
--- error_log
execute: true nil idle
--- no_error_log
[error]
[alert]
