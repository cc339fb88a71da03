# vim:set ts=4 sts=4 sw=4 et ft=:

use lib '.';
use t::WsProxy;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: on_frame sees every frame with role, type, payload, fin and code
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload, last, code)
                    ngx.log(ngx.INFO, "on_frame: ", role, " ", typ, " \"",
                            payload, "\" ", last, " ", code)
                    return payload
                end,
            }))
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
            assert(wb:send_text("hello"))
            ngx.say((assert(wb:recv_frame())))
            assert(wb:send_ping("p"))
            local data, typ = wb:recv_frame()
            ngx.say(typ, " ", data)
            assert(wb:send_close(1000, "bye"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
hello
pong p
close 1000 bye
--- grep_error_log eval: qr/on_frame: .*? (?=while|,)/
--- grep_error_log_out
on_frame: client text "hello" true nil 
on_frame: upstream text "hello" true nil 
on_frame: client ping "p" true nil 
on_frame: upstream pong "p" true nil 
on_frame: client close "bye" true 1000 
on_frame: upstream close "bye" true 1000 
--- no_error_log
[error]



=== TEST 2: a hook that rewrites payloads in both directions
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if typ == "text" then
                        return role .. "(" .. payload .. ")"
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new({ max_payload_len = 2 ^ 24 }))
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hi"))
            ngx.say((assert(wb:recv_frame())))
            -- a rewrite that changes the length encoding (125 -> 70000)
            assert(wb:send_text(string.rep("a", 125)))
            local data = assert(wb:recv_frame())
            ngx.say(#data, " ", data:sub(1, 16))
            wb:send_close()
        }
    }
--- response_body
upstream(client(hi))
143 upstream(client(
--- no_error_log
[error]



=== TEST 3: returning nil drops a frame
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if payload == "drop me" then
                        return nil
                    end
                    return payload
                end,
            }))
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
            assert(wb:send_text("drop me"))
            assert(wb:send_text("keep me"))
            ngx.say((assert(wb:recv_frame())))
            wb:send_close()
        }
    }
--- response_body
keep me
--- error_log
frame type: text, payload: "keep me"
--- no_error_log
frame type: text, payload: "drop me"
[error]



=== TEST 4: a second return value rewrites a close frame's status code
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload, last, code)
                    if typ == "close" and role == "client" then
                        return "rewritten", 4000
                    end
                    return payload
                end,
            }))
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
            assert(wb:send_close(1000, "original"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
close 4000 rewritten
--- error_log
frame type: close, payload: "rewritten"
forwarding close with code: 4000, payload: rewritten
--- no_error_log
[error]



=== TEST 5: a hook that raises an error closes both sides with 1011
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if payload == "boom" then
                        error("exploded on purpose")
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
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
            assert(wb:send_text("boom"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
close 1011 Internal Error
--- error_log eval
[
qr/\[error\] .*? on_frame handler failed for a frame from client: .*?exploded on purpose/,
qr/frame type: close, payload: "Internal Error"/,
qr/execute: nil on_frame handler failed for a frame from client: .*?exploded on purpose/,
]



=== TEST 6: a hook that returns a non-string closes both sides with 1011
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    return { "a table" }
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("x"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code)
        }
    }
--- response_body
close 1011
--- error_log
opts.on_frame return value must be nil or a string



=== TEST 7: the hook may yield (ngx.sleep) while the other direction flows
--- config
    location /upstream {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            -- speaks first, while the client's first frame is held
            assert(wb:send_text("from upstream"))
            local data, typ = wb:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", data)
            assert(wb:send_text("echo " .. data))
            wb:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if role == "client" and typ == "text" then
                        ngx.sleep(0.3)
                        return "slept: " .. payload
                    end
                    return payload
                end,
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            local t0 = ngx.now()
            assert(wb:send_text("hi"))
            local data = assert(wb:recv_frame())
            ngx.update_time()
            ngx.say(data, " early: ", ngx.now() - t0 < 0.25)
            data = assert(wb:recv_frame())
            ngx.say(data)
            wb:send_close()
        }
    }
--- response_body
from upstream early: true
echo slept: hi
--- error_log
upstream got: slept: hi
--- no_error_log
[error]



=== TEST 8: the hook may use cosockets
--- config
    location /side {
        return 200 "side-channel";
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if role == "client" and typ == "text" then
                        local sock = ngx.socket.tcp()
                        assert(sock:connect("127.0.0.1", ngx.var.server_port))
                        assert(sock:send("GET /side HTTP/1.0\r\n\r\n"))
                        local body = sock:receive("*a")
                        sock:close()
                        return payload .. "+" .. body:match("side%-channel")
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("a"))
            ngx.say((assert(wb:recv_frame())))
            assert(wb:send_text("b"))
            ngx.say((assert(wb:recv_frame())))
            wb:send_close()
        }
    }
--- response_body
a+side-channel
b+side-channel
--- no_error_log
[error]



=== TEST 9: ngx.exit() inside a hook ends the session without a crash, the client gets 1001
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if payload == "exit" then
                        return ngx.exit(444)
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("exit"))
            local data, typ, err = wb:recv_frame()
            ngx.say(data, " ", typ, " ", err)
        }
    }
--- response_body
 close 1001
--- wait: 0.2
--- error_log
frame type: close, payload: ""
the request ended while the session was running



=== TEST 10: close frames cannot be dropped by a hook
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    return nil
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
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
            assert(wb:send_text("dropped"))
            assert(wb:send_close(1000, "bye"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
close 1000 bye
--- error_log
close frames cannot be dropped, forwarding it
execute: true nil
--- no_error_log
[error]



=== TEST 11: a hook's error reaches the log and execute() whole, whatever the hook read through ngx.var before
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    local uri = ngx.var.uri
                    if typ == "close" then
                        return payload, 999
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
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
            assert(wb:send_text("hello"))
            ngx.say(wb:recv_frame())
            assert(wb:send_close(1000, "bye"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
hellotextnil
close 1011 Internal Error
--- error_log eval
[
qr/\[error\] .*? on_frame handler failed for a frame from client: invalid frame from on_frame: a control frame payload is limited to 125 bytes and a close status to valid codes\b/,
qr/execute: nil on_frame handler failed for a frame from client: invalid frame from on_frame: a control frame payload is limited to 125 bytes and a close status to valid codes\b/,
]



=== TEST 12: a hook's text that is not UTF-8 is a hook error, not sent
The hook rewrites a whole text message to bytes that are not UTF-8:
neither peer gets them, both get 1011.
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if typ == "text" and role == "client" then
                        return "bad \255 text"
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo))
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
            assert(wb:send_text("hello"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
close 1011 Internal Error
--- error_log eval
[
qr/\[error\] .*? on_frame handler failed for a frame from client: invalid frame from on_frame: text that is not UTF-8\b/,
qr/execute: nil on_frame handler failed for a frame from client: invalid frame from on_frame: text that is not UTF-8\b/,
]



=== TEST 13: a hook's close reason: not UTF-8 is a hook error; too long is cut at a code point
The first session's hook gives the client's close a reason that is not
UTF-8 (both peers get 1011); the second one's, 70 two-byte characters
(140 bytes): the upstream gets the first 61 of them (122 bytes, the
longest whole part that fits in 123), still UTF-8.
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local bad = ngx.var.arg_bad == "1"
            local wp = assert(proxy.new({
                on_frame = function(proxy, role, typ, payload)
                    if typ == "close" and role == "client" then
                        return bad and "\255" or string.rep("\195\169", 70)
                    end
                    return payload
                end,
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/reason"))
            local done, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", done, " ", err)
        }
    }

    location /reason {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            local data, typ, code = wb:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", typ, " ", code, " ", #data,
                    " ", data == string.rep("\195\169", 61))
            wb:send_close(code, "")
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            for _, bad in ipairs({ "1", "0" }) do
                local wb = assert(client:new())
                assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                  .. "/proxy?bad=" .. bad))
                assert(wb:send_close(1000, "bye"))
                local data, typ, code = wb:recv_frame()
                ngx.say(typ, " ", code)
                wb:close()
            end
        }
    }
--- response_body
close 1011
close 1000
--- error_log eval
[
qr/execute: nil on_frame handler failed for a frame from client: invalid frame from on_frame: text that is not UTF-8\b/,
qr/upstream got: close 1000 122 true/,
]
