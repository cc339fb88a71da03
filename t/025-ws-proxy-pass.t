# vim:set ts=4 sts=4 sw=4 et ft=:

# ws_proxy_pass: the proxy without Lua (the test peers are Lua): the
# client's checks, an address, a variable URI, limits from directives,
# aggregation, refusals relayed, 502/504, wss, subprotocols, the log
# variables.

use lib '.';
use t::WsProxy;

plan 'no_plan';

use_test_certs();

# a port nothing listens on, after the ones t/009 and t/024 take
$ENV{TEST_NGINX_DEAD_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 11;

# a TLS server that wants a client certificate
$ENV{TEST_NGINX_CERT_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 1;

# a unix socket upstream
$ENV{TEST_NGINX_SOCK} = "$ENV{TEST_NGINX_CERTS}/ws025.sock";

# an upstream that answers with the request head it got (any path)
$ENV{TEST_NGINX_HEAD_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 12;

our $Config = $t::WsProxy::HttpConfig . q{
    # the upgrade request as the upstream got it, in one text frame (the
    # random key replaced), then the close
    server {
        listen 127.0.0.1:$TEST_NGINX_HEAD_PORT;

        location / {
            content_by_lua_block {
                local head = ngx.req.raw_header()
                    :gsub("(Sec%-WebSocket%-Key: )[^\r]*", "%1KEY")
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text(head)
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }

    # a plain HTTP server first: its TLS handshake fails
    upstream tlsmix {
        server 127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
        server 127.0.0.1:$TEST_NGINX_TLS_PORT;
    }

    log_format pass 'pass: $status $ws_proxy_upstream_addr '
                    'client=$ws_proxy_client_frames/'
                    '$ws_proxy_client_close_code '
                    'upstream=$ws_proxy_upstream_frames/'
                    '$ws_proxy_upstream_close_code/'
                    '$ws_proxy_upstream_close_reason '
                    'by=$ws_proxy_closed_by';

    server {
        listen $TEST_NGINX_CERT_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_verify_client on;
        ssl_client_certificate $TEST_NGINX_CERTS/ca.crt;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text("cert:" .. ngx.var.ssl_client_s_dn)
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }

    server {
        listen $TEST_NGINX_TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text("tls")
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }
};

# the upstream end of most blocks: says what it got, frame by frame
our $Rec = q{
    location /rec {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ headers = {
                ngx.var.arg_proto
                and "Sec-WebSocket-Protocol: " .. ngx.var.arg_proto
                or "X-Upstream: rec" } }))
            ngx.log(ngx.INFO, "rec offered: ",
                    ngx.var.http_sec_websocket_protocol)
            while true do
                local f, err = s:recv_frame()
                if not f then
                    return
                end
                if f.opcode == 8 then
                    s:send_close(f.code, "bye")
                    return
                end
                s:send_text("got " .. ws.describe(f))
            end
        }
    }

    location /refuse {
        content_by_lua_block {
            ngx.status = 401
            ngx.header["WWW-Authenticate"] = 'Basic realm="chat"'
            ngx.print("who are you?")
        }
    }

    location /hold {
        content_by_lua_block {
            ngx.sleep(1)
        }
    }
};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $Config);
    }

    if ($block->can('client') && defined $block->client) {
        my $pass = $block->can('pass') ? $block->pass : '';
        $block->set_value("config", $Rec . <<"_EOC_");
    location /proxy {
        access_log logs/error.log pass;
$pass
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
@{[ $block->client ]}
        }
    }
_EOC_
    }
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an echo through ws_proxy_pass, the log variables
--- pass
        ws_proxy_pass ws://127.0.0.1:$server_port/rec;
--- client
            local c = assert(ws.client("/proxy"))
            ngx.say(c.headers["x-upstream"])
            c:send_text("hello")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_frame{ opcode = 2, payload = "bin" }
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
rec
text:got text:hello (masked)
text:got binary:bin (masked)
close:1000:bye
--- error_log eval
qr/pass: 101 127\.0\.0\.1:\d+ client=3\/1000 upstream=3\/1000\/bye by=client/
--- no_error_log
[error]
[warn]



=== TEST 2: variables in the URI
--- pass
        set $up 127.0.0.1:$server_port;
        ws_proxy_pass ws://$up/rec$is_args$args;
--- client
            local c = assert(ws.client("/proxy?proto=chat",
                      { headers = { "Sec-WebSocket-Protocol: superchat, chat" } }))
            ngx.say(c.headers["sec-websocket-protocol"])
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body
chat
text:got text:hi (masked)
--- error_log
rec offered: superchat, chat
--- no_error_log
[error]



=== TEST 3: limits: ws_proxy_client_max_frame_size closes the client with 1009
--- pass
        ws_proxy_client_max_frame_size 10;
        ws_proxy_pass ws://127.0.0.1:$server_port/rec;
--- client
            local c = assert(ws.client("/proxy"))
            c:send_text("short")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_text("much longer than ten")
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.code)
            c:send_close(f.code, "ok")
--- response_body
text:got text:short (masked)
8 1009
--- error_log eval
[qr/pass: 101 .* by=proxy/, "client frame size (20) exceeds limit, closing"]
--- no_error_log
[error]



=== TEST 4: limits: ws_proxy_max_frame_size is both sides', a side's own wins
--- pass
        ws_proxy_max_frame_size 5;
        ws_proxy_client_max_frame_size 1k;
        ws_proxy_pass ws://127.0.0.1:$server_port/rec;
--- client
            local c = assert(ws.client("/proxy"))
            c:send_text("0123456789")
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.code)
            c:send_close(1000, "ok")
--- response_body
8 1001
--- error_log eval
[qr/pass: 101 .* by=proxy/, "upstream frame size (28) exceeds limit, closing"]



=== TEST 5: ws_proxy_aggregate_fragments on: two fragments reach the upstream as one frame
--- pass
        ws_proxy_aggregate_fragments on;
        ws_proxy_pass ws://127.0.0.1:$server_port/rec;
--- client
            local c = assert(ws.client("/proxy"))
            c:send_frame{ opcode = 1, fin = false, payload = "ab" }
            c:send_frame{ opcode = 0, fin = true, payload = "cd" }
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body
text:got text:abcd (masked)
--- no_error_log
[error]



=== TEST 6: unreachable: 502, with one [error] line, nginx's own, as proxy_pass logs it
--- pass
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_DEAD_PORT/rec;
--- client
            local c, err, r = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 502
--- error_log eval
[qr/\[error\] .*connect\(\) (?:to \S+ )?failed \(111: Connection refused\)/,
 qr/\[info\] .*ws_proxy_pass: failed to connect: connection refused, upstream: "ws:\/\/127\.0\.0\.1:/,
 "pass: 502"]
--- no_error_log
[error] ws_proxy_pass



=== TEST 7: no answer within ws_proxy_read_timeout: 504
--- pass
        ws_proxy_read_timeout 200ms;
        ws_proxy_pass ws://127.0.0.1:$server_port/hold;
--- client
            local c, err = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 504
--- error_log
ws_proxy_pass: failed to receive response header: timeout
pass: 504



=== TEST 8: a refusal is relayed with its headers and body
--- pass
        ws_proxy_pass ws://127.0.0.1:$server_port/refuse;
--- client
            local c, err, r = ws.client("/proxy")
            ngx.say(err, " ", r.headers["www-authenticate"])
            ngx.say(r.sock:receive(12))
--- response_body
status 401 Basic realm="chat"
who are you?
--- error_log
the upstream refused the upgrade with 401, relayed
--- no_error_log
[error]



=== TEST 9: the client's request is checked first: a plain GET is refused, the upstream never dialed
--- pass
        ws_proxy_pass ws://127.0.0.1:$server_port/rec;
--- client
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", ngx.var.server_port))
            assert(sock:send("GET /proxy HTTP/1.1\r\nHost: x\r\n\r\n"))
            ngx.say(sock:receive("*l"))
--- response_body
HTTP/1.1 400 Bad Request
--- no_error_log
rec offered



=== TEST 10: wss with verification against a trusted CA and ws_proxy_ssl_name
--- pass
        ws_proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
        ws_proxy_ssl_verify on;
        ws_proxy_ssl_name localhost;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS_PORT/;
--- client
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:tls
close:1000:bye
--- no_error_log
[error]



=== TEST 11: wss: a name the certificate does not carry is 502
--- pass
        ws_proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
        ws_proxy_ssl_verify on;
        ws_proxy_ssl_name other.example;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS_PORT/;
--- client
            local c, err = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 502
--- error_log
ws_proxy_pass: ssl handshake failed: certificate does not match host "other.example"



=== TEST 12: a bad URI from variables is a 500
--- pass
        set $up "http://127.0.0.1/";
        ws_proxy_pass $up;
--- client
            local c, err = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 500
--- error_log
ws_proxy_pass: bad websocket uri "http://127.0.0.1/"



=== TEST 13: ws_proxy_pass without ws:// or wss:// is refused at start
--- config
    location /proxy {
        ws_proxy_pass http://127.0.0.1/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid URL prefix in "http://127.0.0.1/": ws:// or wss:// expected



=== TEST 14: wss through a group: a failed TLS handshake moves on to the next server
--- pass
        ws_proxy_ssl_name localhost;
        ws_proxy_pass wss://tlsmix/;
--- client
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:tls
close:1000:bye
--- error_log eval
[qr/\[warn\] .*ws_proxy: upstream server 127\.0\.0\.1:\d+ of "tlsmix" failed \(ssl handshake failed: [^)]*\), trying the next one/,
qr/pass: 101 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ /]



=== TEST 15: ws_proxy_ssl_certificate: the client certificate an upstream asks for
--- pass
        ws_proxy_ssl_certificate $TEST_NGINX_CERTS/client.crt;
        ws_proxy_ssl_certificate_key $TEST_NGINX_CERTS/client.key;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_CERT_PORT/;
--- client
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:cert:CN=test-client
close:1000:bye
--- no_error_log
[error]



=== TEST 16: without it, that upstream refuses the upgrade: its 400 is relayed
--- pass
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_CERT_PORT/;
--- client
            local c, err = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 400
--- error_log
the upstream refused the upgrade with 400, relayed



=== TEST 17: ws_proxy_ssl_certificate without its key is refused at start
--- config
    location /proxy {
        ws_proxy_ssl_certificate $TEST_NGINX_CERTS/client.crt;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_CERT_PORT/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
no "ws_proxy_ssl_certificate_key" for "ws_proxy_ssl_certificate"



=== TEST 18: no URI part: the client's URI is passed unchanged, as proxy_pass passes it
--- pass
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT;
--- client
            local c = assert(ws.client("/proxy/a/b?x=1&y=%41"))
            ngx.print((c:recv_frame().payload:gsub("\r", "")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body eval
"GET /proxy/a/b?x=1&y=%41 HTTP/1.1
Host: 127.0.0.1:$ENV{TEST_NGINX_HEAD_PORT}
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: KEY
Sec-WebSocket-Version: 13

"
--- no_error_log
[error]



=== TEST 19: a URI part replaces the part of the URI that matched the location
--- pass
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/base;
--- client
            local c = assert(ws.client("/proxy/a%20b/c?x=1"))
            ngx.say((c:recv_frame().payload:match("^[^\r]*")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body
GET /base/a%20b/c?x=1 HTTP/1.1
--- no_error_log
[error]



=== TEST 20: with variables, the URI is what they give; without a path there, the client's
--- config
    location /proxy {
        set $up 127.0.0.1:$TEST_NGINX_HEAD_PORT;
        ws_proxy_pass ws://$up;
    }

    location /fixed {
        set $up 127.0.0.1:$TEST_NGINX_HEAD_PORT;
        ws_proxy_pass ws://$up/other$is_args$args;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{ "/proxy/p?q=1", "/fixed/p?q=2" } do
                local c = assert(ws.client(path))
                ngx.say((c:recv_frame().payload:match("^[^\r]*")))
                c:send_close(1000, "done")
                c:recv_frame()
            end
        }
    }
--- response_body
GET /proxy/p?q=1 HTTP/1.1
GET /other?q=2 HTTP/1.1
--- no_error_log
[error]



=== TEST 21: a browser's request line ('{', '}', '|', '"', UTF-8 unencoded) is forwarded encoded, never a 500
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT;
    }

    location /base {
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/up;
    }

    location /ru {
        set $up 127.0.0.1:$TEST_NGINX_HEAD_PORT;
        ws_proxy_pass ws://$up$request_uri;
    }

    location /uri {
        set $up 127.0.0.1:$TEST_NGINX_HEAD_PORT;
        ws_proxy_pass ws://$up$uri;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{
                '/proxy/q"|caf\195\169?f={x}&g=a|b',
                '/base/q"|caf\195\169?f={x}',
                '/ru/q"|caf\195\169?f={x}',
                '/uri/x%0ay%20z%5B%25',
            } do
                local c, err = ws.client(path)
                if not c then
                    ngx.say(path, ": ", err)
                else
                    ngx.say((c:recv_frame().payload:match("^[^\r]*")))
                    c:send_close(1000, "done")
                    c:recv_frame()
                end
            end
        }
    }
--- response_body
GET /proxy/q%22%7Ccaf%C3%A9?f=%7Bx%7D&g=a%7Cb HTTP/1.1
GET /up/q%22%7Ccaf%C3%A9?f=%7Bx%7D HTTP/1.1
GET /ru/q%22%7Ccaf%C3%A9?f=%7Bx%7D HTTP/1.1
GET /uri/x%0Ay%20z%5B%25 HTTP/1.1
--- no_error_log
[error]



=== TEST 22: the client's headers reach the upstream, but hop-by-hop and the handshake's own; ws_proxy_set_header replaces, adds, removes
--- pass
        ws_proxy_set_header X-Real-IP $remote_addr;
        ws_proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        ws_proxy_set_header User-Agent "";
        ws_proxy_set_header X-Added "room $arg_room";
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/;
--- client
            local c = assert(ws.client("/proxy?room=7", { headers = {
                "Origin: https://chat.example",
                "Cookie: session=abc",
                "Authorization: Bearer t0k3n",
                "User-Agent: Mozilla/5.0",
                "X-Real-IP: 6.6.6.6",
                "X-Forwarded-For: 10.1.2.3",
                "Keep-Alive: 300",
                "TE: trailers",
                "Sec-WebSocket-Extensions: permessage-deflate",
                "Cookie: second=1",
            } }))
            ngx.print((c:recv_frame().payload:gsub("\r", "")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body eval
"GET /?room=7 HTTP/1.1
Host: 127.0.0.1:$ENV{TEST_NGINX_HEAD_PORT}
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: KEY
Sec-WebSocket-Version: 13
Origin: https://chat.example
Cookie: session=abc
Authorization: Bearer t0k3n
Cookie: second=1
X-Real-IP: 127.0.0.1
X-Forwarded-For: 10.1.2.3, 127.0.0.1
X-Added: room 7

"
--- no_error_log
[error]



=== TEST 23: ws_proxy_pass_request_headers off: only ws_proxy_set_header's; Host set by ws_proxy_set_header
--- pass
        ws_proxy_pass_request_headers off;
        ws_proxy_set_header Host chat.example;
        ws_proxy_set_header X-Added yes;
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/;
--- client
            local c = assert(ws.client("/proxy", { headers = {
                "Origin: https://chat.example", "Cookie: session=abc" } }))
            ngx.print((c:recv_frame().payload:gsub("\r", "")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body eval
"GET / HTTP/1.1
Host: chat.example
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: KEY
Sec-WebSocket-Version: 13
X-Added: yes

"
--- no_error_log
[error]



=== TEST 24: a 7.9 KB Cookie passes with the default handshake buffer (8k), as proxy_pass passes it: the request's buffer grows to fit
--- config
    location /small {
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/;
    }

    location /large {
        ws_proxy_handshake_buffer_size 16k;
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local cookie = "Cookie: c=" .. string.rep("x", 7900)
            for _, path in ipairs{ "/small", "/large" } do
                local c, err = ws.client(path, { headers = { cookie } })
                if not c then
                    ngx.say(path, ": ", err)
                else
                    local head = c:recv_frame().payload
                    ngx.say(path, ": ", #(head:match("Cookie: [^\r]*")))
                    c:send_close(1000, "done")
                    c:recv_frame()
                end
            end
        }
    }
--- response_body
/small: 7910
/large: 7910
--- no_error_log
[error]



=== TEST 25: a name resolved when the configuration is read, as proxy_pass resolves it: no resolver needed
Where localhost is also ::1 (Debian 13's /etc/hosts), the first address
refuses (the test server listens on 127.0.0.1) and the next one answers, as
with proxy_pass: that refusal's [error] line is nginx's usual one.
--- pass
        ws_proxy_pass ws://localhost:$TEST_NGINX_HEAD_PORT/named;
--- client
            local c = assert(ws.client("/proxy"))
            ngx.say((c:recv_frame().payload:match("^[^\r]*\r\n[^\r]*")))
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body eval
"GET /named HTTP/1.1\r
Host: localhost:$ENV{TEST_NGINX_HEAD_PORT}
"
--- no_error_log
no resolver defined
[alert]



=== TEST 26: refused at start: no host
--- config
    location /proxy {
        ws_proxy_pass ws://;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
bad websocket uri "ws://"



=== TEST 27: refused at start: a port over 65535
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:65536/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
bad websocket uri "ws://127.0.0.1:65536/": invalid port



=== TEST 28: refused at start: userinfo
--- config
    location /proxy {
        ws_proxy_pass ws://u:p@127.0.0.1/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
bad websocket uri "ws://u:p@127.0.0.1/": userinfo (user:password@) is not supported



=== TEST 29: refused at start: a fragment
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1/x#frag;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
a fragment ("#...") is not allowed in upstream "ws://127.0.0.1/x#frag"



=== TEST 30: refused at start: a host that is neither an upstream block nor resolvable
--- config
    location /proxy {
        ws_proxy_pass ws://no-such-host.invalid/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
host not found in upstream "no-such-host.invalid"



=== TEST 31: refused at start: a URI part in a regex location, as proxy_pass refuses it
--- config
    location ~ ^/proxy {
        ws_proxy_pass ws://127.0.0.1/x;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
"ws_proxy_pass" cannot have URI part in location given by regular expression



=== TEST 32: refused at start: ws_proxy_set_header of the handshake's own headers
--- config
    location /proxy {
        ws_proxy_set_header Sec-WebSocket-Protocol chat;
        ws_proxy_pass ws://127.0.0.1/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
header "Sec-WebSocket-Protocol" cannot be set: the module sets the handshake's own headers



=== TEST 33: a target from variables is checked at run time: a host that does not resolve is a 502 and one log line
--- pass
        resolver 127.0.0.1:1 valid=1s;
        resolver_timeout 500ms;
        set $up no-such-host.invalid;
        ws_proxy_pass ws://$up/;
--- client
            local c, err = ws.client("/proxy")
            ngx.say(err)
--- response_body
status 502
--- error_log eval
qr/\[error\] .*ws_proxy_pass: failed to connect: "no-such-host\.invalid" could not be resolved/
--- no_error_log
[alert]



=== TEST 34: a unix socket without variables, added at start as proxy_pass adds it: a URI part replaces the location's
--- http_config eval
$::Config . q{
    server {
        listen unix:$TEST_NGINX_SOCK;
        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text("unix " .. ngx.var.http_host .. " "
                            .. ngx.var.request_uri)
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }
}
--- pass
        ws_proxy_pass ws://unix:$TEST_NGINX_SOCK:/base;
--- client
            local c = assert(ws.client("/proxy/x?y=1"))
            ngx.say(c:recv_frame().payload)
            c:send_close(1000, "done")
            c:recv_frame()
--- response_body
unix localhost /base/x?y=1
--- no_error_log
[error]



=== TEST 35: a rewrite ... break in a location with a URI part: the changed URI is passed whole, the URI part ignored, as proxy_pass does
--- config
    location /base/ {
        rewrite ^/base/(.*)$ /new/$1 break;
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/up/;
    }

    location /same/ {
        rewrite ^/same/(.*)$ /same/$1 break;
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT/up/;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{ "/base/a%20b?x=1", "/same/c?y=2" } do
                local c = assert(ws.client(path))
                ngx.say((c:recv_frame().payload:match("^[^\r]*")))
                c:send_close(1000, "done")
                c:recv_frame()
            end
        }
    }
--- response_body
GET /new/a%20b?x=1 HTTP/1.1
GET /same/c?y=2 HTTP/1.1
--- no_error_log
[error]



=== TEST 36: a raw '#' in the client's request line ends its URI, for nginx's location match as for the upstream: not passed on as %23 with what follows
--- config
    location /admin {
        return 403;
    }

    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$TEST_NGINX_HEAD_PORT;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{ "/proxy/x#/../../admin",
                                   "/proxy/y?a=1#frag", "/proxy/z%23k" } do
                local c = assert(ws.client(path))
                ngx.say((c:recv_frame().payload:match("^[^\r]*")))
                c:send_close(1000, "done")
                c:recv_frame()
            end
        }
    }
--- response_body
GET /proxy/x HTTP/1.1
GET /proxy/y?a=1 HTTP/1.1
GET /proxy/z%23k HTTP/1.1
--- no_error_log
[error]
