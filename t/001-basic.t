# vim:set ts=4 sts=4 sw=4 et ft=:

use lib '.';
use t::WsProxy;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: forward a text frame back and forth
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"

            local wp, err = proxy.new()
            if not wp then
                ngx.log(ngx.ERR, "failed creating proxy: ", err)
                return ngx.exit(444)
            end

            local ok, err = wp:connect(proxy._tests.echo)
            if not ok then
                ngx.log(ngx.ERR, err)
                return ngx.exit(444)
            end

            local done, err = wp:execute()
            if not done then
                ngx.log(ngx.ERR, "failed proxying: ", err)
                return ngx.exit(444)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            local uri = "ws://127.0.0.1:" .. ngx.var.server_port .. "/proxy"

            assert(wb:connect(uri))
            assert(wb:send_text("hello world!"))
            local data = assert(wb:recv_frame())
            ngx.say(data)
        }
    }
--- response_body
hello world!
--- grep_error_log eval: qr/\[lua\].*/
--- grep_error_log_out eval
qr/frame type: text, payload: "hello world!"/
--- no_error_log
[error]



=== TEST 2: forward a ping/pong exchange and a binary frame
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_ping("heartbeat"))
            local data, typ = assert(wb:recv_frame())
            ngx.say(typ, ": ", data)
            assert(wb:send_binary("\0\1\2\255"))
            data, typ = assert(wb:recv_frame())
            ngx.say(typ, ": ", #data, " ", data:byte(4))
            assert(wb:send_close(1000, "bye"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, ": ", code, " ", data)
        }
    }
--- response_body
pong: heartbeat
binary: 4 255
close: 1000 bye
--- no_error_log
[error]



=== TEST 3: every payload length encoding, both directions
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new({ max_payload_len = 2 ^ 24,
                                           timeout = 5000 }))
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))

            for _, n in ipairs({ 0, 1, 125, 126, 127, 65535, 65536,
                                 1024 * 1024 }) do
                local payload = string.rep("0123456789abcdef", n / 16 + 1)
                                      :sub(1, n)
                assert(wb:send_binary(payload))
                local data, typ, err = wb:recv_frame()
                ngx.say(n, ": ", typ, " ", data == payload)
            end

            assert(wb:send_close(1000, "done"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code)
        }
    }
--- response_body
0: binary true
1: binary true
125: binary true
126: binary true
127: binary true
65535: binary true
65536: binary true
1048576: binary true
close 1000
--- no_error_log
[error]



=== TEST 4: frames fed byte by byte, and many frames in one write
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))

            local frame = ws.build_frame{ opcode = 1,
                                          payload = string.rep("x", 300) }
            for i = 1, #frame do
                assert(c:send_raw(frame:sub(i, i)))
                if i % 50 == 0 then
                    ngx.sleep(0.001)
                end
            end

            ngx.say(ws.describe(c:recv_frame()))

            local many = {}
            for i = 1, 100 do
                many[i] = ws.build_frame{ opcode = 1, payload = "m" .. i }
            end
            assert(c:send_raw(table.concat(many)))

            local ok = 0
            for i = 1, 100 do
                local f = c:recv_frame()
                if f and f.payload == "m" .. i then
                    ok = ok + 1
                end
            end
            ngx.say("in order: ", ok)

            c:send_close(1000)
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
text:300 bytes
in order: 100
close:1000:
--- no_error_log
[error]



=== TEST 5: close from the client is forwarded with code and reason
--- config
    location /upstream {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            local data, typ, err = wb:recv_frame()
            ngx.log(ngx.INFO, "frame type: ", typ, ", code: ", err,
                    ", payload: \"", data, "\"")
            assert(wb:send_close(1000, "ack"))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local done, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", done, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_close(1000, "goodbye"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, ": ", code, " ", data)
        }
    }
--- response_body
close: 1000 ack
--- error_log
frame type: close, code: 1000, payload: "goodbye"
forwarding close with code: 1000, payload: goodbye
forwarding close with code: 1000, payload: ack
execute: true nil
--- no_error_log
[error]



=== TEST 6: close from upstream (no status) is forwarded
--- config
    location /upstream {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            assert(wb:send_close())
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local done, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", done, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            local data, typ = assert(wb:recv_frame())
            ngx.say(typ)
        }
    }
--- response_body
close
--- error_log
forwarding close with code: nil
execute: true nil
--- no_error_log
[error]



=== TEST 7: handshake with the client before the upstream
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect_client())
            assert(wp:connect_upstream(proxy._tests.echo))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hello world!"))
            local data = assert(wb:recv_frame())
            ngx.say(data)
        }
    }
--- response_body
hello world!
--- no_error_log
[error]



=== TEST 8: connect_upstream returns the upstream's 101 response head
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err, res = wp:connect_upstream(proxy._tests.echo)
            ngx.log(ngx.INFO, "ok: ", ok, ", err: ", err, ", status line: ",
                    res:match("^[^\r]+"),
                    ", has accept: ", res:find("Sec-WebSocket-Accept", 1,
                                               true) ~= nil)
            assert(wp:connect_client())
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("x"))
            local data = assert(wb:recv_frame())
            ngx.say(data)
        }
    }
--- response_body
x
--- error_log
ok: true, err: nil, status line: HTTP/1.1 101 Switching Protocols, has accept: true
--- no_error_log
[error]



=== TEST 9: frames pipelined right after the upgrade request
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", {
                pipelined = ws.build_frame{ opcode = 1, payload = "early" }
            }))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1001, "going")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
text:early
close:1001:going
--- no_error_log
[error]
