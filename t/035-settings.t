# vim:set ts=4 sts=4 sw=4 et ft=:

# What users configure does what it says: every ws_proxy_* setting of a
# Lua location is the default of new()'s and connect()'s options there (the
# option wins), and what cannot work is refused at nginx -t.

use lib '.';
use t::WsRaw;

plan 'no_plan';

use_test_certs();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ws_proxy_max_frame_size in a Lua location: new() without the option, a 500-byte frame gets 1009
--- proxy_directives
        ws_proxy_max_frame_size 100;
--- client
            c:send_text(string.rep("a", 100))
            say_next()
            c:send_text(string.rep("a", 500))
            say_next()
--- response_body
text:100 bytes
close:1009:Payload Too Large
--- error_log
client frame size (500) exceeds limit, closing
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 2: new()'s option wins over the directive
--- proxy_directives
        ws_proxy_client_max_frame_size 100;
--- proxy_opts
{ client_max_frame_size = 1000 }
--- client
            c:send_text(string.rep("a", 500))
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", #f.payload)
            c:send_close(1000, "done")
            say_next()
--- response_body
1 500
close:1000:done
--- no_error_log
exceeds limit
[error]



=== TEST 3: a side's limit as new()'s default
--- proxy_directives
        ws_proxy_upstream_max_frame_size 10;
--- upstream
            s:send_text("0123456789a")
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream frame size (11) exceeds limit, closing
upstream got: close:1009:Payload Too Large



=== TEST 4: ws_proxy_max_fragments as new()'s default
--- proxy_directives
        ws_proxy_max_fragments 2;
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "1" }
            c:send_frame{ opcode = 0, fin = false, payload = "2" }
            c:send_frame{ opcode = 0, fin = true, payload = "3" }
            -- the offender's close comes at once: the upstream's echoes
            -- of the first two fragments may or may not precede it
            repeat
                local f, err = c:recv_frame()
                ngx.say(ws.describe(f, err))
            until not f or f.opcode == 8
--- response_body_like eval
qr/\A(?:text:1 \(fin=0\)\n(?:continuation:2 \(fin=0\)\n)?)?close:1009:Payload Too Large\n\z/
--- error_log
client frame count (3) exceeds limit, closing



=== TEST 5: ws_proxy_aggregate_fragments on as new()'s default: the hook sees one message
--- proxy_directives
        ws_proxy_aggregate_fragments on;
--- proxy_opts
{ on_frame = function(p, role, typ, payload, last)
      ngx.log(ngx.INFO, "hook: ", role, " ", typ, " ", payload, " ", last)
      return payload
  end }
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "ab" }
            c:send_frame{ opcode = 0, fin = true, payload = "cd" }
            say_next()
            c:send_close(1000, "done")
            say_next()
--- response_body
text:abcd
close:1000:done
--- error_log
hook: client text abcd true
--- no_error_log
hook: client text ab false
[error]



=== TEST 6: ws_proxy_recv_timeout as new()'s default
--- proxy_directives
        ws_proxy_recv_timeout 100ms;
--- client
            ws.sleep(0.3)
            c:send_close(1000, "done")
            say_next()
--- response_body
close:1000:done
--- error_log
timeout receiving frame from client, reopening
--- no_error_log
[error]



=== TEST 7: ws_proxy_ssl_verify and ws_proxy_ssl_name as connect()'s defaults
--- http_config eval
$t::WsProxy::HttpConfig . qq{
    server {
        listen $ENV{TEST_NGINX_TLS_PORT} ssl;
        server_name localhost;
        ssl_certificate $ENV{TEST_NGINX_CERTS}/server.crt;
        ssl_certificate_key $ENV{TEST_NGINX_CERTS}/server.key;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:recv_frame()
            }
        }
    }
}
--- config
    location /t {
        ws_proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
        ws_proxy_ssl_verify on;
        ws_proxy_ssl_name other.example;

        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local uri = "wss://127.0.0.1:$TEST_NGINX_TLS_PORT/"
            local opts = {
                ssl_verify = { ssl_verify = false },
                server_name = { server_name = "x.test" },
            }
            local ok, err = proxy.new():connect_upstream(uri,
                                                         opts[ngx.var.arg_o])
            ngx.say(ngx.var.arg_o, ": ", ok, " ", err)
        }
    }
--- response_body
nil: nil ssl handshake failed: certificate does not match host "other.example"



=== TEST 8: connect()'s ssl_verify = false wins over ws_proxy_ssl_verify on
--- request
GET /t?o=ssl_verify
--- response_body
ssl_verify: true nil



=== TEST 9: connect()'s server_name wins over ws_proxy_ssl_name
--- request
GET /t?o=server_name
--- response_body
server_name: nil ssl handshake failed: certificate does not match host "x.test"






=== TEST 10: ws_proxy_ping_timeout without ws_proxy_ping_interval is refused
--- config
    location /t {
        ws_proxy_ping_timeout 5s;
        return 200;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_ping_timeout" needs "ws_proxy_ping_interval" at the same level or above



=== TEST 11: an interval at an outer level is enough
--- config
    ws_proxy_ping_interval 10s;

    location /t {
        ws_proxy_ping_timeout 5s;
        return 200 "ok\n";
    }
--- response_body
ok



=== TEST 12: ws_proxy_ssl_certificate_key without a certificate is refused
--- config
    location /t {
        ws_proxy_ssl_certificate_key $TEST_NGINX_CERTS/client.key;
        return 200;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
no "ws_proxy_ssl_certificate" for "ws_proxy_ssl_certificate_key"



=== TEST 13: $ws_proxy_client_deflate is what the client's 101 said
--- http_config eval
$t::WsProxy::HttpConfig . q{
    log_format wsd 'deflate var: [$ws_proxy_client_deflate]';
}
--- config
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            s:recv_frame()
        }
    }

    location /proxy {
        ws_proxy_deflate client;
        ws_proxy_deflate_window_bits 10;
        access_log logs/error.log wsd;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate",
            } }))
            ngx.say("101: [", c.headers["sec-websocket-extensions"], "]")
            c:send_close(1000, "done")
            c:recv_frame()
        }
    }
--- response_body
101: [permessage-deflate; server_no_context_takeover; client_no_context_takeover]
--- error_log
deflate var: [permessage-deflate; server_no_context_takeover; client_no_context_takeover]
--- no_error_log
server_max_window_bits
[error]



=== TEST 14: two Sec-WebSocket-Key headers are reported as a duplicate, not as a bad value
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- raw_request eval
"GET /proxy HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Connection: close\r
\r
"
--- error_code: 400
--- response_body_like
duplicate "sec-websocket-key" request header: dGhlIHNhbXBsZSBub25jZQ==
--- error_log
rejecting websocket handshake with 400: duplicate "sec-websocket-key" request header: dGhlIHNhbXBsZSBub25jZQ==



=== TEST 15: two Sec-WebSocket-Version: 13 headers likewise
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- raw_request eval
"GET /proxy HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Sec-WebSocket-Version: 13\r
Connection: close\r
\r
"
--- error_code: 426
--- response_body_like
duplicate "sec-websocket-version" request header: 13



=== TEST 16: a full metrics zone says so once per set of keys, not per session
--- http_config eval
$t::WsProxy::HttpConfig . q{
    ws_proxy_zone wsfull 32k;
}
--- config
    location /full {
        ws_proxy_zone_key $arg_k;
        content_by_lua_block {
            local p = assert(require("resty.websocket.proxy").new())
            p:connect("ws://127.0.0.1:1/never")
        }
    }

    location /t {
        content_by_lua_block {
            -- plain GETs: each is refused (400) and counted under its key
            for i = 1, 300 do
                local s = ngx.socket.tcp()
                assert(s:connect("127.0.0.1", ngx.var.server_port))
                s:send("GET /full?k=key" .. i .. " HTTP/1.0\r\n\r\n")
                s:receive("*a")
                s:close()
            end
            ngx.say("done")
        }
    }
--- response_body
done
--- grep_error_log eval: qr/ws_proxy_zone "wsfull" is full with \d+ keys: key "key\d+"/
--- grep_error_log_out eval
qr/\Aws_proxy_zone "wsfull" is full with \d+ keys: key "key\d+"\n\z/
--- no_error_log
[error]



=== TEST 17: ngx.exit() from on_frame (client's direction): both peers get a close, a line says why
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if payload == "exit" then
          return ngx.exit(444)
      end
      return payload
  end }
--- client
            c:send_text("hi")
            say_next()
            c:send_text("exit")
            say_next()
--- response_body
text:hi
close:1001:
--- error_log
upstream got: close:1001:
ws_proxy: the request ended while the session was running (ngx.exit() in on_frame?), closing both peers with 1001



=== TEST 18: ngx.exit() from on_frame in the upstream's direction (a light thread)
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if role == "upstream" and payload == "exit" then
          return ngx.exit(444)
      end
      return payload
  end }
--- client
            c:send_text("exit")
            say_next()
--- response_body
close:1001:
--- error_log
upstream got: close:1001:
ws_proxy: the request ended while the session was running (ngx.exit() in on_frame?), closing both peers with 1001



=== TEST 19: ws_proxy_set_header in a Lua location (it applies to ws_proxy_pass only) is refused, not ignored
--- config
    location /t {
        ws_proxy_set_header X-Tenant a;
        content_by_lua_block { ngx.say("ok") }
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_set_header" applies to ws_proxy_pass only, not to this location's handler: use connect()'s "headers" option in Lua



=== TEST 20: ws_proxy_pass_request_headers in a Lua location likewise
--- config
    location /t {
        ws_proxy_pass_request_headers off;
        content_by_lua_block { ngx.say("ok") }
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_pass_request_headers" applies to ws_proxy_pass only, not to this location's handler: use connect()'s "forward_headers" option in Lua



=== TEST 21: at the server level, for the ws_proxy_pass locations inside, a Lua location beside them is fine
--- config
    ws_proxy_set_header X-Tenant a;
    ws_proxy_pass_request_headers off;

    location /t {
        content_by_lua_block { ngx.say("ok") }
    }
--- response_body
ok



=== TEST 22: in a Lua location with an "if" that holds a ws_proxy_pass (which inherits them), they are fine
--- config
    location /t {
        ws_proxy_set_header X-Tenant a;
        ws_proxy_pass_request_headers off;
        if ($arg_ws) {
            ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
        }
        content_by_lua_block { ngx.say("ok") }
    }
--- response_body
ok
