# vim:set ts=4 sts=4 sw=4 et ft=:

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: new() type errors are raised as Kong's library raises them
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local cases = {
                "not a table",
                { on_frame = "nope" },
                { recv_timeout = "1" },
                { client_max_frame_size = 0 },
                { client_max_frame_size = "big" },
                { client_max_fragments = 0 },
                { upstream_max_frame_size = -1 },
                { upstream_max_fragments = "x" },
            }
            for _, opts in ipairs(cases) do
                local ok, err = pcall(proxy.new, opts)
                ngx.say(ok, " ", err)
            end
            ngx.say(type(proxy.new()), " ", type(proxy.new({})))
        }
    }
--- response_body
false opts must be a table
false opts.on_frame must be a function
false opts.recv_timeout must be a number
false opts.client_max_frame_size must be a number >= 1
false opts.client_max_frame_size must be a number >= 1
false opts.client_max_fragments must be a number >= 1
false opts.upstream_max_frame_size must be a number >= 1
false opts.upstream_max_fragments must be a number >= 1
table table
--- no_error_log
[error]



=== TEST 2: calling connect_upstream() while already established logs a warning
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo))
            assert(wp:connect_upstream(proxy._tests.echo))
            local done, err = wp:execute()
            if not done then
                ngx.log(ngx.ERR, "failed proxying: ", err)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hello world!"))
            ngx.say((assert(wb:recv_frame())))
        }
    }
--- response_body
hello world!
--- grep_error_log eval: qr/\[(info|warn)\].*/
--- grep_error_log_out eval
qr/\A\[warn\] .*? connection with upstream at "ws:.*?" already established.*
\[info\] .*? frame type: text, payload: "hello world!"/
--- no_error_log
[error]



=== TEST 3: calling connect_client() while the handshake is done logs a warning
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo))
            assert(wp:connect_client())
            local done, err = wp:execute()
            if not done then
                ngx.log(ngx.ERR, "failed proxying: ", err)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hello world!"))
            ngx.say((assert(wb:recv_frame())))
        }
    }
--- response_body
hello world!
--- error_log eval
qr/\[warn\] .*? client handshake already completed/
--- no_error_log
[error]



=== TEST 4: execute() without the client handshake
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect_upstream(proxy._tests.echo))
            local done, err = wp:execute()
            ngx.say(done, " ", err)
        }
    }
--- response_body
nil client handshake not complete



=== TEST 5: execute() without the upstream connection
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ debug = true }))
            assert(wp:connect_client())
            local done, err = wp:execute()
            if not done then
                ngx.log(ngx.ERR, "failed proxying: ", err)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            ngx.say("connected")
        }
    }
--- response_body
connected
--- error_log eval
qr/\[error\] .*? failed proxying: upstream connection not established/



=== TEST 6: connect() argument errors
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(pcall(wp.connect_upstream, wp, nil))
            ngx.say(pcall(wp.connect_upstream, wp, "ws://127.0.0.1/", "x"))
            ngx.say(wp:connect_upstream("ws://127.0.0.1:1/",
                                        { headers = "not a table" }))
        }
    }
--- response_body
falseuri must be a string
falseopts must be a table
nilcustom headers must be a table



=== TEST 7: debug = true logs each frame at debug level, truncated
--- log_level: debug
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ debug = true }))
            assert(wp:connect(proxy._tests.echo))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("a rather long payload that gets truncated"))
            ngx.say((assert(wb:recv_frame())))
        }
    }
--- response_body
a rather long payload that gets truncated
--- error_log eval
[
qr/\[frame\] downstream --> resty.proxy --> upstream$/,
qr/^  payload: "a rather long payload th\[...\]" \(len: 41\)$/,
qr/\[frame\] downstream <-- resty.proxy <-- upstream/,
qr/connecting to "ws:.*" upstream/,
]
--- no_error_log
[error]



=== TEST 8: Kong's "forwarding close" lines are the Lua library's
--- client
            c:send_close(1000, "bye")
            say_next()
--- response_body
close:1000:bye
--- error_log eval
[
qr/\[info\] .*?\[lua\] .*?forwarding close with code: 1000, payload: bye while proxying websocket frames/,
qr/upstream got: close:1000:bye/,
]
--- no_error_log
[error]



=== TEST 9: with a hook, Kong's lines come after the hook's own, in order
--- proxy_opts
{ on_frame = function(p, role, typ, payload, fin, code)
      ngx.log(ngx.INFO, "hook: ", role, " ", typ)
      return payload
  end,
  client_max_fragments = 2 }
--- client
            c:send_text("ok")
            say_next()
            c:send_close(4000, "bye")
            say_next()
--- response_body
text:ok
close:4000:bye
--- grep_error_log eval
qr/\[lua\] .*?\b(?:hook: \w+ \w+|forwarding close with code: \d+, payload: \w*)/
--- grep_error_log_out eval
qr/\A[^\n]*hook: client text
[^\n]*hook: upstream text
[^\n]*hook: client close
[^\n]*forwarding close with code: 4000, payload: bye
[^\n]*hook: upstream close
[^\n]*forwarding close with code: 4000, payload: bye\n\z/
--- no_error_log
[error]



=== TEST 10: Kong's client limit line is the Lua library's
--- proxy_opts
{ client_max_fragments = 2 }
--- client
            for i = 1, 3 do
                c:send_frame{ opcode = i == 1 and 1 or 0, fin = false,
                              payload = "f" }
            end
            -- the echoes of the fragments before the limit come first
            local f
            repeat f = c:recv_frame() until not f or f.opcode == 8
            ngx.say(ws.describe(f))
--- response_body
close:1009:Payload Too Large
--- error_log eval
[
qr/\[info\] .*?\[lua\] .*?client frame count \(3\) exceeds limit, closing while/,
]
--- no_error_log
[error]



=== TEST 11: Kong's upstream limit line is the Lua library's
--- proxy_opts
{ upstream_max_frame_size = 3 }
--- upstream
            s:send_frame{ opcode = 1, payload = "too long" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log eval
[
qr/\[info\] .*?\[lua\] .*?upstream frame size \(8\) exceeds limit, closing while/,
qr/upstream got: close:1009:Payload Too Large/,
]
--- no_error_log
[error]



=== TEST 12: Kong's recv_timeout line is the Lua library's, with and without a hook
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                recv_timeout = 100,
                on_frame = ngx.var.arg_hook and function(p, role, typ, data)
                    return data
                end or nil,
            }))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, q in ipairs({ "", "?hook=1" }) do
                local c = assert(ws.client("/proxy" .. q))
                ngx.sleep(0.25)
                c:send_close(1000, "q" .. q)
                ngx.say(ws.describe(c:recv_frame()))
            end
        }
    }
--- response_body
close:1000:q
close:1000:q?hook=1
--- error_log eval
[
qr/\[info\] .*?\[lua\] .*?timeout receiving frame from client, reopening while .*?GET \/proxy HTTP/,
qr/\[info\] .*?\[lua\] .*?timeout receiving frame from client, reopening while .*?GET \/proxy\?hook=1 HTTP/,
qr/\[info\] .*?\[lua\] .*?timeout receiving frame from upstream, reopening while .*?GET \/proxy\?hook=1 HTTP/,
]
--- no_error_log
[error]



=== TEST 13: a handler that ends after connect() without execute() leaves both peers a 1011 close
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            ngx.log(ngx.INFO, "upstream got (", ngx.var.arg_how, "): ",
                    ws.describe(s:recv_frame()))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local how = ngx.var.arg_how
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream?how=" .. how))
            if how == "error" then
                error("handler failed")
            elseif how == "exit" then
                ngx.exit(ngx.OK)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, how in ipairs({ "error", "exit", "return" }) do
                local c = assert(ws.client("/proxy?how=" .. how))
                ngx.say(how, ": ", ws.describe(c:recv_frame()))
            end
            ngx.sleep(0.05)
        }
    }
--- response_body
error: close:1011:Internal Error
exit: close:1011:Internal Error
return: close:1011:Internal Error
--- error_log
upstream got (error): close:1011:Internal Error
upstream got (exit): close:1011:Internal Error
upstream got (return): close:1011:Internal Error



=== TEST 14: ngx.say() after the handshake is refused: no raw bytes in the frame stream
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            ngx.say("raw bytes")
            ngx.print("raw bytes")
            ngx.log(ngx.INFO, "execute: ", wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("hello")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "bye")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
text:hello
close:1000:bye
--- error_log eval
[
qr/\[error\] .*? ws_proxy: response body output after the WebSocket handshake refused and discarded \(ngx.say\(\) or ngx.print\(\) would write into the frame stream\)/,
qr/execute: true/,
]



=== TEST 15: recv_timeout times each direction from its own last read (Kong's order)
--- proxy_opts
{ recv_timeout = require("wstest").ms(400) }
--- upstream
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                f = s:recv_frame()
                s:send_close(f.code, f.reason)
--- client
            ws.sleep(0.15)
            c:send_text("hi")
            ws.sleep(0.5)
            c:send_close(1000, "bye")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1000:bye
--- grep_error_log eval: qr/timeout receiving frame from \w+/
--- grep_error_log_out
timeout receiving frame from upstream
timeout receiving frame from client
--- no_error_log
[error]
