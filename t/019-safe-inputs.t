# vim:set ts=4 sts=4 sw=4 et ft=:

# Inputs that cannot inject and errors that say what happened (issue 13):
# upstream URIs and the headers option, the module's own frames (UTF-8),
# connect errors, option checks, and the directives' 0.

use lib '.';
use t::WsProxy;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: an upstream URI with bytes RFC 3986 does not allow in a request target is refused before anything is sent
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local base = "ws://127.0.0.1:" .. ngx.var.server_port
            local cases = {
                "/x\r\nX-Injected: yes",
                "/x\nX-Injected: yes",
                "/x y",
                "/x\0y",
                "/x\127",
                "/caf\195\169",
                "/x#frag",
                "/x%zz",
                "/x%2",
                "?a=\"b\"",
                "/<x>",
            }
            for _, tail in ipairs(cases) do
                local wp = assert(proxy.new())
                local ok, err = wp:connect_upstream(base .. tail)
                ngx.say(ok, " ", (err:gsub(base, "BASE")
                                     :gsub("[%z\1-\31\127-\255]", function(c)
                                         return string.format("\\%d", c:byte())
                                     end)))
            end
        }
    }
--- response_body
nil bad websocket uri "BASE/x\x0d\x0aX-Injected: yes"
nil bad websocket uri "BASE/x\x0aX-Injected: yes"
nil bad websocket uri "BASE/x y"
nil bad websocket uri "BASE/x\x00y"
nil bad websocket uri "BASE/x\x7f"
nil bad websocket uri "BASE/caf\195\169"
nil bad websocket uri "BASE/x#frag"
nil bad websocket uri "BASE/x%zz"
nil bad websocket uri "BASE/x%2"
nil bad websocket uri "BASE?a="b""
nil bad websocket uri "BASE/<x>"
--- no_error_log
[error]
X-Injected



=== TEST 2: bad bytes in the host or a unix socket path are refused too
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local cases = {
                "ws://exa mple.com/",
                "ws://example.com\r\nX: y/",
                "ws://unix:/tmp/a b.sock:/",
                "ws://[::1\r\n]/",
            }
            for _, uri in ipairs(cases) do
                local wp = assert(proxy.new())
                local ok, err = wp:connect_upstream(uri)
                ngx.say(ok, " ", (err:gsub("\r", "\\r"):gsub("\n", "\\n")))
            end
        }
    }
--- response_body
nil bad websocket uri "ws://exa mple.com/"
nil bad websocket uri "ws://example.com\x0d\x0aX: y/"
nil bad websocket uri "ws://unix:/tmp/a b.sock:/"
nil bad websocket uri "ws://[::1\x0d\x0a]/"
--- no_error_log
[error]



=== TEST 3: the bytes RFC 3986 allows reach the upstream as they were written
--- config
    location /up {
        content_by_lua_block {
            ngx.log(ngx.INFO, "upstream request: ", ngx.var.request_uri)
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            wb:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local path = "/up/a-b.c_d~e!$&'()*+,;=:@%20?q=/?x%2Fy"
            ngx.say(wp:connect_upstream("ws://127.0.0.1:"
                                        .. ngx.var.server_port .. path))
        }
    }
--- response_body_like eval
qr{^truenilHTTP/1\.1 101 }
--- error_log
upstream request: /up/a-b.c_d~e!$&'()*+,;=:@%20?q=/?x%2Fy
--- no_error_log
[error]



=== TEST 4: userinfo in the URI gets an error that says so, not "invalid port"
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            for _, uri in ipairs({ "ws://user:pw@127.0.0.1/",
                                   "ws://user@127.0.0.1:8080/x",
                                   "wss://u:p@[::1]:443/" }) do
                local wp = assert(proxy.new())
                ngx.say(wp:connect_upstream(uri))
            end
        }
    }
--- response_body
nilbad websocket uri "ws://user:pw@127.0.0.1/": userinfo (user:password@) is not supported, use the "headers" option for an Authorization header
nilbad websocket uri "ws://user@127.0.0.1:8080/x": userinfo (user:password@) is not supported, use the "headers" option for an Authorization header
nilbad websocket uri "wss://u:p@[::1]:443/": userinfo (user:password@) is not supported, use the "headers" option for an Authorization header
--- no_error_log
[error]



=== TEST 5: the headers option may not set the handshake's own headers, in either of its forms
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local cases = {
                { "Host: evil.example" },
                { host = "evil.example" },
                { "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==" },
                { ["Sec-WebSocket-Protocol"] = "chat" },
                { "Connection: close" },
                { Upgrade = { "h2c" } },
                { "Sec-WebSocket-Version: 8" },
                { ["Sec-WebSocket-Extensions"] = "permessage-deflate" },
                { "X-Ok: 1", " Host : x" },
            }
            for _, h in ipairs(cases) do
                local wp = assert(proxy.new())
                ngx.say(wp:connect_upstream(require("resty.websocket.proxy")
                                            ._tests.echo, { headers = h }))
            end
        }
    }
--- response_body
nilcustom header "Host" is not allowed: use the "host" option
nilcustom header "host" is not allowed: use the "host" option
nilcustom header "sec-websocket-key" is not allowed: use the "key" option
nilcustom header "Sec-WebSocket-Protocol" is not allowed: use the "protocols" option
nilcustom header "Connection" is not allowed: the module sets it
nilcustom header "Upgrade" is not allowed: the module sets it
nilcustom header "Sec-WebSocket-Version" is not allowed: the module sets it
nilcustom header "Sec-WebSocket-Extensions" is not allowed: the module sets it
nilcustom header "Host" is not allowed: use the "host" option
--- no_error_log
[error]



=== TEST 6: other custom headers still reach the upstream
--- config
    location /up {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            wb:recv_frame()
            wb:send_text(ngx.var.http_x_one .. " " .. ngx.var.http_x_two)
            wb:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                                                .. ngx.var.server_port
                                                .. "/up", {
                headers = { "X-One: 1", ["X-Two"] = "2" },
            })
            ngx.say(ok, " ", err)
        }
    }
--- response_body
true nil
--- no_error_log
[error]



=== TEST 7: send_frame() of a text frame and close() reasons must be valid UTF-8, reasons at most 123 bytes
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:send_frame("client", "text", "\255"))
            ngx.say(wp:send_frame("upstream", "text", "caf\195"))
            ngx.say(wp:send_frame("client", "text", "\237\160\128"))
            ngx.say(wp:close(1000, "\192\128"))
            ngx.say(wp:close(1000, "ok", 1001, "\244\144\128\128"))
            ngx.say(wp:close(1000, string.rep("x", 124)))
            ngx.say(wp:close(1000, "ok", 1000, string.rep("\195\169", 62)))
            -- valid ones go on to the session check
            ngx.say(wp:send_frame("client", "text", "caf\195\169 \240\159\152\128"))
            ngx.say(wp:send_frame("client", "binary", "\255"))
            ngx.say(wp:send_frame("client", "ping", "\255"))
            ngx.say(wp:close(1000, string.rep("\195\169", 61) .. "x"))
        }
    }
--- response_body
niltext frame payload must be valid UTF-8
niltext frame payload must be valid UTF-8
niltext frame payload must be valid UTF-8
nilclose messages must be valid UTF-8
nilclose messages must be valid UTF-8
nilclose messages are limited to 123 bytes
nilclose messages are limited to 123 bytes
nilproxy is not running
nilproxy is not running
nilproxy is not running
nilproxy is not running
--- no_error_log
[error]



=== TEST 8: a close() reason in UTF-8 reaches the client whole during a session
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                on_frame = function(p, role, typ, payload)
                    if role == "client" and typ == "text" then
                        ngx.log(ngx.INFO, "bad: ",
                                select(2, p:close(1000, "\255")))
                        assert(p:close(4000, "au revoir \195\169t\195\169"))
                    end
                    return payload
                end,
            }))
            assert(wp:connect(proxy._tests.echo))
            ngx.log(ngx.INFO, "execute: ", wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hi"))
            local data, typ, code = wb:recv_frame()
            ngx.say(typ, " ", code, " ", data)
        }
    }
--- response_body
close 4000 au revoir été
--- error_log
bad: close messages must be valid UTF-8
execute: true
--- no_error_log
[error]



=== TEST 9: a unix socket that does not exist: "no such file or directory", not "connection refused" (the system's text for any errno: "permission denied" too, which root, who runs the suite, never gets)
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://unix:/nonexistent/ws.sock:/"))
            wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://unix:/dev/null/ws.sock:/"))
        }
    }
--- response_body
nilfailed to connect: no such file or directory
nilfailed to connect: not a directory
--- allowed_levels
[crit]
--- error_log
connect() to ws://unix:/nonexistent/ws.sock:/ failed (2: No such file or directory)



=== TEST 10: a socket that is not a socket, and a port nobody listens on, say so too
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://unix:/dev/null:/"))
            wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://127.0.0.1:1/"))
        }
    }
--- response_body
nilfailed to connect: connection refused
nilfailed to connect: connection refused



=== TEST 11: new() checks numbers for NaN, range and 0 where 0 means nothing
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local nan = 0 / 0
            local cases = {
                { client_max_frame_size = nan },
                { client_max_frame_size = math.huge },
                { upstream_max_frame_size = 2 ^ 60 },
                { client_max_fragments = 2 ^ 31 },
                { upstream_max_fragments = nan },
                { max_payload_size = 0 },
                { max_payload_size = -1 },
                { max_payload_size = "16m" },
                { recv_timeout = 0 },
                { recv_timeout = -5 },
                { recv_timeout = nan },
                { send_timeout = 0 },
                { send_timeout = 2 ^ 31 },
                { close_timeout = -1 },
                { close_timeout = "5s" },
            }
            for _, opts in ipairs(cases) do
                local ok, err = pcall(proxy.new, opts)
                ngx.say(ok, " ", err)
            end
            ngx.say(type(proxy.new({ client_max_frame_size = 2 ^ 53,
                                     client_max_fragments = 2 ^ 31 - 1,
                                     recv_timeout = 1, send_timeout = 1,
                                     close_timeout = 1,
                                     max_payload_size = 1 })))
        }
    }
--- response_body
false opts.client_max_frame_size must be a number >= 1
false opts.client_max_frame_size must be a number <= 9007199254740992
false opts.upstream_max_frame_size must be a number <= 9007199254740992
false opts.client_max_fragments must be a number <= 2147483647
false opts.upstream_max_fragments must be a number >= 1
false opts.max_payload_size must be a number >= 1
false opts.max_payload_size must be a number >= 1
false opts.max_payload_size must be a number >= 1
false opts.recv_timeout must be a number >= 1
false opts.recv_timeout must be a number >= 1
false opts.recv_timeout must be a number >= 1
false opts.send_timeout must be a number >= 1
false opts.send_timeout must be a number <= 2147483647
false opts.close_timeout must be a number >= 1
false opts.close_timeout must be a number >= 1
table
--- no_error_log
[error]



=== TEST 12: connect()'s options are checked where they are given, not inside the FFI
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local nan = 0 / 0
            local cases = {
                { timeout = "x" },
                { timeout = 0 },
                { connect_timeout = -1 },
                { send_timeout = nan },
                { read_timeout = 2 ^ 31 },
                { host = 42 },
                { key = true },
                { server_name = {} },
                { origin = 1 },
                { client_cert = "PEM", client_priv_key = "PEM" },
            }
            -- a WebSocket request, so that connect() gets past the
            -- client's checks; the results are said once all are known
            local out = {}
            for i, opts in ipairs(cases) do
                local wp = assert(proxy.new())
                local ok, res, err = pcall(wp.connect, wp, proxy._tests.echo,
                                           opts)
                out[i] = tostring(ok) .. " " .. tostring(res) .. " "
                         .. tostring(err)
            end
            ngx.say(table.concat(out, "\n"))
        }
    }
--- response_body
true nil failed connecting to upstream: opts.timeout must be a number >= 1
true nil failed connecting to upstream: opts.timeout must be a number >= 1
true nil failed connecting to upstream: opts.connect_timeout must be a number >= 1
true nil failed connecting to upstream: opts.send_timeout must be a number >= 1
true nil failed connecting to upstream: opts.read_timeout must be a number <= 2147483647
true nil failed connecting to upstream: opts.host must be a string
true nil failed connecting to upstream: opts.key must be a string
true nil failed connecting to upstream: opts.server_name must be a string
true nil failed connecting to upstream: opts.origin must be a string
true nil failed connecting to upstream: opts.client_cert must be a cdata (from ngx.ssl.parse_pem_cert())
--- more_headers
Upgrade: websocket
Connection: Upgrade, close
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- no_error_log
[error]



=== TEST 13: set_max_*() refuse NaN and numbers C cannot hold
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(pcall(wp.set_max_payload_size, wp, "client", 0 / 0))
            ngx.say(pcall(wp.set_max_payload_size, wp, "client", math.huge))
            ngx.say(pcall(wp.set_max_fragments, wp, "upstream", 0 / 0))
            ngx.say(pcall(wp.set_max_fragments, wp, "upstream", 2 ^ 31))
            ngx.say(wp:set_max_payload_size("client", 0))
        }
    }
--- response_body
falsesize must be a number >= 0 (0: unlimited)
falsesize must be a number >= 0 (0: unlimited)
falsen must be a number >= 0 (0: unlimited)
falsen must be a number >= 0 (0: unlimited)
true
--- no_error_log
[error]



=== TEST 14: ws_proxy_max_payload 0 is refused at configuration time
--- config
    ws_proxy_max_payload 0;
    location /t {
        return 200;
    }
--- must_die
--- allowed_levels
[emerg]
--- error_log
"ws_proxy_max_payload" directive must be more than 0



=== TEST 15: a time of 0 in a directive is refused too
--- config
    ws_proxy_send_timeout 0;
    location /t {
        return 200;
    }
--- must_die
--- allowed_levels
[emerg]
--- error_log
"ws_proxy_send_timeout" directive must be more than 0



=== TEST 16: after the session: stats() keeps the final figures, the other controls say "proxy is not running"
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            -- before the session: kept for execute()
            ngx.log(ngx.INFO, "before: ", wp:set_max_payload_size("client", 5),
                    " ", wp:set_max_fragments("client", 5))
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            ngx.log(ngx.INFO, "connected: ", wp:stats().state)
            ngx.log(ngx.INFO, "execute: ", wp:execute())
            local st = assert(wp:stats())
            ngx.log(ngx.INFO, "after: ", st.state, " frames ", st.client_frames,
                    " closed by ", st.closed_by, " code ", st.client_close_code)
            ngx.log(ngx.INFO, "set_max_payload_size: ",
                    wp:set_max_payload_size("client", 5))
            ngx.log(ngx.INFO, "set_max_fragments: ",
                    wp:set_max_fragments("client", 5))
            ngx.log(ngx.INFO, "close: ", wp:close())
            ngx.log(ngx.INFO, "send_frame: ", wp:send_frame("client", "text", "x"))
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/proxy"))
            assert(wb:send_text("hi"))
            ngx.say((wb:recv_frame()))
            wb:send_close(1000, "bye")
            wb:recv_frame()
            ngx.sleep(0.1)
        }
    }
--- response_body
hi
--- error_log
before: true true
connected: connected
execute: true
after: done frames 2 closed by client code 1000
set_max_payload_size: nilproxy is not running
set_max_fragments: nilproxy is not running
close: nilproxy is not running
send_frame: nilproxy is not running
--- no_error_log
[error]



=== TEST 17: forward_path percent-encodes the bytes of the client's path that nginx accepts and RFC 3986 does not, and ends it at a raw '#', where nginx ends $uri (not "%23" and the rest, another path once dot segments go)
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS_PORT;
        location / {
            content_by_lua_block {
                ngx.log(ngx.INFO, "upstream request: ", ngx.var.request_uri)
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                local data = wb:recv_frame()
                wb:send_text(data)
                wb:recv_frame()
            }
        }
    }
}
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:"
                                       .. os.getenv("TEST_NGINX_TLS_PORT")
                                       .. "/", { forward_path = true })
            if not ok then
                ngx.log(ngx.ERR, err)
                return
            end
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            for _, path in ipairs{ "/proxy/caf\195\169\"x?q=a%20b",
                                   "/proxy/x?a=1#/../../admin" } do
                local wb = assert(client:new())
                assert(wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                  .. path))
                assert(wb:send_text("hi"))
                ngx.say((wb:recv_frame()))
                wb:send_close()
            end
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
hi
hi
--- error_log
upstream request: /proxy/caf%C3%A9%22x?q=a%20b
upstream request: /proxy/x?a=1,
--- no_error_log
[error]



=== TEST 18: header values and the host option may not carry CR, LF, NUL or other control bytes
--- config
    location /up {
        content_by_lua_block {
            local server = require "nginx.websocket.server"
            local wb = assert(server:new())
            wb:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local echo = "ws://127.0.0.1:" .. ngx.var.server_port .. "/up"
            local cases = {
                { headers = { "X-A: 1\r\nX-Injected: yes" } },
                { headers = { ["X-A"] = "1\0" } },
                { origin = "http://a\n" },
                { protocols = { "chat\r" } },
                { host = "a\r\nX-Injected: yes" },
                { host = "a\0b" },
            }
            for _, opts in ipairs(cases) do
                local wp = assert(proxy.new())
                ngx.say(wp:connect_upstream(echo, opts))
            end
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream(echo, { headers = { "X-Tab: a\tb" } }))
        }
    }
--- response_body_like eval
qr{\Anilheader contains a CR, LF or other control byte: X-A: 1\\x0d\\x0aX-Injected: yes
nilheader contains a CR, LF or other control byte: X-A: 1\\x00
nilheader contains a CR, LF or other control byte: Origin: http://a\\x0a
nilprotocols contain a CR, LF or NUL
nilhost contains a CR, LF or other control byte
nilhost contains a CR, LF or other control byte
truenilHTTP/1.1 101 }
--- no_error_log
[error]
X-Injected
