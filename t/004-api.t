# vim:set ts=4 sts=4 sw=4 et ft=:

use lib '.';
use t::WsProxy;

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
