# vim:set ts=4 sts=4 sw=4 et ft=:

# Faults and sizes: slow readers, huge frames, floods of tiny frames,
# upstreams that fail the handshake in every way.

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: a client that does not read: the proxy stops reading the upstream
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 10000 }))
            local chunk = string.rep("u", 1024 * 1024)
            for i = 1, 32 do
                local ok, err = s:send_frame{ opcode = 2, payload = chunk }
                if not ok then
                    ngx.log(ngx.ERR, "upstream send: ", err)
                    return
                end
            end
            ngx.log(ngx.INFO, "upstream sent everything")
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            assert(ngx.timer.at(0.5, function()
                local st = wp:stats()
                ngx.log(ngx.INFO, "while the client sleeps, received from ",
                        "upstream: ", st.upstream_bytes < 16 * 1024 * 1024
                                      and "bounded" or st.upstream_bytes)
            end))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { timeout = 10000 }))
            ngx.sleep(1)
            local n, bytes = 0, 0
            for i = 1, 32 do
                local f = c:recv_frame()
                if f and f.opcode == 2 then
                    n = n + 1
                    bytes = bytes + #f.payload
                end
            end
            ngx.say(n, " frames, ", bytes, " bytes")
            c:send_close(1000)
            c:recv_frame()
        }
    }
--- timeout: 20
--- response_body
32 frames, 33554432 bytes
--- error_log
while the client sleeps, received from upstream: bounded
upstream sent everything
--- no_error_log
[error]



=== TEST 2: one 64 MiB frame streams through (passthrough)
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 20000 }))
            local sock = s.sock
            local h = assert(sock:receive(2))
            local e = assert(sock:receive(8))
            local len = 0
            for i = 1, 8 do len = len * 256 + e:byte(i) end
            assert(sock:receive(4))
            local got, bad = 0, 0
            while got < len do
                local n = math.min(1024 * 1024, len - got)
                local data = assert(sock:receive(n))
                if data ~= string.rep("z", n) then bad = bad + 1 end
                got = got + n
            end
            s:send_frame{ opcode = 1, payload = got .. " bytes, " .. bad
                                                .. " bad chunks" }
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { timeout = 20000 }))
            local len = 64 * 1024 * 1024
            -- a zero masking key leaves the payload as it is
            assert(c:send_raw(ws.build_frame{ opcode = 2, len = len,
                                              mask = "\0\0\0\0",
                                              payload = "" }))
            local chunk = string.rep("z", 1024 * 1024)
            for i = 1, 64 do
                assert(c:send_raw(chunk))
            end
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000)
            c:recv_frame()
        }
    }
--- timeout: 30
--- response_body
text:67108864 bytes, 0 bad chunks
--- no_error_log
[error]



=== TEST 3: five thousand tiny frames in one write, all echoed in order
--- client
            c.sock:settimeout(ws.ms(20000))
            local frames = {}
            for i = 1, 5000 do
                frames[i] = ws.build_frame{ opcode = 1,
                                            payload = tostring(i % 100) }
            end
            c:send_raw(table.concat(frames))
            local ok = 0
            for i = 1, 5000 do
                local f = c:recv_frame()
                if f and f.payload == tostring(i % 100) then
                    ok = ok + 1
                end
            end
            ngx.say(ok, " in order")
            c:send_close(1000)
            say_next()
--- upstream
                s.sock:settimeout(ws.ms(20000))
                while true do
                    local f = s:recv_frame()
                    if not f or f.opcode == 8 then
                        if f then s:send_close(f.code) end
                        break
                    end
                    s:send_frame{ opcode = 1, payload = f.payload }
                end
--- timeout: 20
--- response_body
5000 in order
close:1000:
--- no_error_log
[error]



=== TEST 4: upstreams that fail the handshake (an LF-only head fails at once)
--- config
    location /close-at-once {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            return ngx.exit(444)
        }
    }

    location /redirect {
        return 302 /elsewhere;
    }

    location /ok200 {
        return 200 "not a websocket";
    }

    location /half {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: web")
            ngx.sleep(0.05)
        }
    }

    location /noaccept {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 101 Switching Protocols\r\n"
                      .. "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            ngx.sleep(0.05)
        }
    }

    location /noupgrade {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 101 Switching Protocols\r\n"
                      .. "Upgrade: websocket\r\nConnection: noupgrade\r\n\r\n")
            ngx.sleep(0.05)
        }
    }

    location /lf-only {
        content_by_lua_block {
            local sock = ngx.req.socket(true)
            sock:send("HTTP/1.1 101 Switching Protocols\n"
                      .. "Upgrade: websocket\nConnection: upgrade\n\n")
            ngx.sleep(1)
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            for _, path in ipairs({ "close-at-once", "redirect", "ok200",
                                    "half", "noaccept", "noupgrade",
                                    "lf-only" }) do
                local wp = proxy.new()
                local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                    .. ngx.var.server_port .. "/" .. path)
                ngx.say(path, ": ", err)
            end
        }
    }
--- response_body
close-at-once: failed to receive response header: closed
redirect: bad HTTP response status line: HTTP/1.1 302 Moved Temporarily
ok200: bad HTTP response status line: HTTP/1.1 200 OK
half: failed to receive response header: closed
noaccept: missing "sec-websocket-accept" response header
noupgrade: bad "connection" response header
lf-only: bad HTTP response status line: HTTP/1.1 101 Switching Protocols
--- no_error_log
[error]



=== TEST 5: send_timeout ends a session whose client stops reading
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 10000 }))
            local chunk = string.rep("u", 1024 * 1024)
            for i = 1, 64 do
                if not s:send_frame{ opcode = 2, payload = chunk } then
                    break
                end
            end
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ send_timeout = 300 }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            ngx.sleep(1.5)
            ngx.say("slept")
        }
    }
--- timeout: 5
--- response_body
slept
--- error_log
timed out sending to client
execute: nil timeout sending to client



=== TEST 6: an upstream that reads late: sends to it block, then drain, with and without a hook
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 20000 }))
            -- the proxy fills this socket's buffers, blocks and waits
            ngx.sleep(0.5)
            assert(s:check_numbered(1024))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local opts = {}
            if ngx.var.arg_hook then
                opts.on_frame = function(_, _, _, payload) return payload end
            end
            local wp = assert(proxy.new(opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{ "/proxy", "/proxy?hook=1" } do
                local c = assert(ws.client(path, { timeout = 20000 }))
                -- 1024 frames of 16 KiB, 16 MiB in all, in one write
                assert(c:send_numbered(1024, 16384))
                ngx.say(path, ": ", ws.describe(c:recv_frame()))
                c:send_close(1000)
                c:recv_frame()
                c:close()
            end
        }
    }
--- timeout: 30
--- response_body
/proxy: text:1024 frames, 16777216 bytes, 0 bad
/proxy?hook=1: text:1024 frames, 16777216 bytes, 0 bad
--- no_error_log
[error]
[alert]



=== TEST 7: send_timeout ends a session whose upstream stops reading
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 10000 }))
            -- never reads: the proxy's sends to it block, its timer runs
            -- (long enough for a worker under valgrind to fill the socket:
            -- the suite's slowness factor)
            ws.sleep(8)
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ send_timeout = 300 }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { timeout = 15000 }))
            local chunk = string.rep("c", 1024 * 1024)
            for i = 1, 32 do
                if not c:send_frame{ opcode = 2, payload = chunk } then
                    break
                end
            end
            local f, err = c:recv_frame()
            ngx.say(ws.describe(f, err))
        }
    }
--- timeout: 20
--- response_body_like
^(close:1001:|error: closed)
--- error_log
timed out sending to upstream
execute: nil timeout sending to upstream
--- no_error_log
[alert]
