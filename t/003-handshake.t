# vim:set ts=4 sts=4 sw=4 et ft=:

use lib '.';
use t::WsProxy;

plan 'no_plan';

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_client()
            if not ok then
                ngx.log(ngx.INFO, "connect_client: ", err)
                return
            end
            wp:connect_upstream(proxy._tests.echo)
            wp:execute()
        }
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: a plain GET is answered 400 and connect_client() says why
--- request
GET /t
--- error_code: 400
--- response_body
bad "upgrade" request header: (missing)
--- error_log
connect_client: bad "upgrade" request header: (missing)
--- no_error_log
[error]



=== TEST 2: Connection without upgrade
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: keep-alive\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 400
--- response_body
bad "connection" request header: keep-alive
--- no_error_log
[error]



=== TEST 2b: Connection: noupgrade is not the token "upgrade"
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: noupgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 400
--- response_body
bad "connection" request header: noupgrade
--- no_error_log
[error]



=== TEST 3: a wrong version gets 426 with Sec-WebSocket-Version: 13
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 8\r
\r
"
--- error_code: 426
--- response_headers
Sec-WebSocket-Version: 13
--- response_body
bad "sec-websocket-version" request header: 8
--- no_error_log
[error]



=== TEST 4: a key that is not 16 bytes of base64
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: keep-alive, Upgrade\r
Sec-WebSocket-Key: c2hvcnQ=\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 400
--- response_body
bad "sec-websocket-key" request header: c2hvcnQ=
--- no_error_log
[error]



=== TEST 5: a missing key
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 400
--- response_body
bad "sec-websocket-key" request header: (missing)
--- no_error_log
[error]



=== TEST 6: POST is refused
--- raw_request eval
"POST /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Content-Length: 0\r
\r
"
--- error_code: 400
--- response_body
bad method: POST
--- no_error_log
[error]



=== TEST 7: HTTP/1.0 is refused
--- raw_request eval
"GET /t HTTP/1.0\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 400
--- response_body
bad protocol version: HTTP/1.0
--- no_error_log
[error]



=== TEST 8: a good handshake gets 101 with the RFC's accept value
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: WebSocket\r
Connection: keep-alive, Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 101
--- response_headers
Upgrade: websocket
Connection: upgrade
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
Content-Type:
--- ignore_response_body
--- timeout: 1
--- abort
--- no_error_log
[error]



=== TEST 9: upstream connection refused
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:1/")
            ngx.say(ok, " ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- response_body
nil failed connecting to upstream: failed to connect: connection refused



=== TEST 10: upstream does not answer the handshake in time
--- config
    location /silent {
        content_by_lua_block {
            ngx.sleep(2)
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/silent", { timeout = 200 })
            ngx.say(ok, " ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- response_body
nil failed connecting to upstream: failed to receive response header: timeout
--- error_log
upstream timed out while reading the handshake response



=== TEST 11: upstream answers with another status
--- config
    location /notws {
        return 404;
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                                                .. ngx.var.server_port
                                                .. "/notws")
            ngx.say(ok, " ", err)
        }
    }
--- response_body
nil bad HTTP response status line: HTTP/1.1 404 Not Found



=== TEST 12: upstream answers with a wrong Sec-WebSocket-Accept
--- config
    location /badaccept {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ accept = "d3Jvbmcgd3Jvbmcgd3Jvbmc=" }))
            s:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/badaccept")
            ngx.say(ok, " ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- response_body
nil failed connecting to upstream: bad "sec-websocket-accept" response header: d3Jvbmcgd3Jvbmcgd3Jvbmc=



=== TEST 13: a bad URI
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            -- the answer is written once all are tried: a connect() after
            -- the response header has gone could only fail
            local out = {}
            for _, uri in ipairs({ "http://127.0.0.1/", "ws://",
                                   "ws://127.0.0.1:99999/" }) do
                local ok, err = wp:connect(uri)
                out[#out + 1] = tostring(ok) .. " " .. err
            end
            ngx.say(table.concat(out, "\n"))
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- response_body
nil failed connecting to upstream: bad websocket uri "http://127.0.0.1/"
nil failed connecting to upstream: bad websocket uri "ws://"
nil failed connecting to upstream: bad websocket uri "ws://127.0.0.1:99999/": invalid port



=== TEST 14: a host name with no resolver configured
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://example.invalid/")
            ngx.say(ok, " ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- response_body
nil failed connecting to upstream: failed to connect: no resolver defined to resolve "example.invalid"



=== TEST 15: an upgrade request with a body is refused (Content-Length)
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Content-Length: 5\r
\r
hello"
--- error_code: 400
--- response_body
bad "content-length" request header: 5 (an upgrade request has no body)
--- error_log
connect_client: bad "content-length" request header: 5
--- no_error_log
[error]



=== TEST 16: an upgrade request with a body is refused (Transfer-Encoding)
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Transfer-Encoding: chunked\r
\r
5\r
hello\r
0\r
\r
"
--- error_code: 400
--- response_body
bad "transfer-encoding" request header: chunked (an upgrade request has no body)
--- no_error_log
[error]



=== TEST 17: Content-Length: 0 is no body
--- raw_request eval
"GET /t HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Content-Length: 0\r
\r
"
--- error_code: 101
--- ignore_response_body
--- timeout: 1
--- abort
--- no_error_log
[error]



=== TEST 18: connect() refuses a bad client request before it dials the upstream
--- config
    # a plain GET would never become a session: connect() answers it as
    # connect_client() would, and no upstream connection is opened
    location /upstream {
        content_by_lua_block {
            ngx.log(ngx.INFO, "upstream dialed")
            local server = require "nginx.websocket.server"
            local s = server:new()
            if s then
                s:recv_frame()
            end
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream")
            ngx.log(ngx.INFO, "connect: ", ok, " ", err)
        }
    }
--- request
GET /t
--- error_code: 400
--- response_body
bad "upgrade" request header: (missing)
--- error_log
connect: nil failed client handshake: bad "upgrade" request header:
--- no_error_log
upstream dialed
[error]
