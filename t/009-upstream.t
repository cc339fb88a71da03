# vim:set ts=4 sts=4 sw=4 et ft=:

# The upstream connection: wss:// with nginx's own ssl listeners and test
# certificates made by t/certs.sh, IPv6, subprotocols, handshake options.

use lib '.';
use t::WsProxy;

plan 'no_plan';

use_test_certs();

our $Tls = $t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;

        location / {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                local data, typ, err = wb:recv_frame()
                ngx.log(ngx.INFO, "tls upstream got: ", typ, " ", data,
                        " client cert: ", ngx.var.ssl_client_s_dn)
                if typ == "text" then
                    wb:send_text("tls:" .. data)
                    wb:recv_frame()
                end
            }
        }
    }

    server {
        listen $TEST_NGINX_TLS_PORT1 ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/expired.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/expired.key;
        location / { return 404; }
    }

    server {
        listen $TEST_NGINX_TLS_PORT2 ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_verify_client on;
        ssl_client_certificate $TEST_NGINX_CERTS/ca.crt;

        location / {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                local data = wb:recv_frame()
                wb:send_text(ngx.var.ssl_client_s_dn .. ":" .. data)
                wb:recv_frame()
            }
        }
    }
};
# a listener that never accepts, with its queue full: a connect() to it
# gets no answer, which is what connect_timeout is for
use IO::Socket::INET;
our $Blackhole = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => 0, Listen => 1,
                                       ReuseAddr => 1) or die $!;
$ENV{TEST_NGINX_BLACKHOLE_PORT} = $Blackhole->sockport;
our @Fillers = map {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1', Blocking => 0,
                          PeerPort => $ENV{TEST_NGINX_BLACKHOLE_PORT})
} 1 .. 8;

# a tiny DNS server: echo.test is 127.0.0.1, every other name NXDOMAIN
use IO::Socket::INET;
our $Dns = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Proto => 'udp') or die $!;
$ENV{TEST_NGINX_DNS_PORT} = $Dns->sockport;
our $DnsPid = fork;
die "fork: $!" unless defined $DnsPid;
if ($DnsPid == 0) {
    while (1) {
        my $peer = $Dns->recv(my $q, 512) or next;
        my ($id, $flags, $qd) = unpack 'n n n', $q;
        my $pos = 12;
        my @labels;
        while (my $len = ord substr($q, $pos, 1)) {
            push @labels, substr($q, $pos + 1, $len);
            $pos += $len + 1;
        }
        my $question = substr($q, 12, $pos + 5 - 12);
        my $qtype = unpack 'n', substr($q, $pos + 1, 2);
        my $name = lc join '.', @labels;
        my $known = $name eq 'echo.test';
        my $answer = $known && $qtype == 1
            ? pack('n n n N n C4', 0xc00c, 1, 1, 60, 4, 127, 0, 0, 1) : '';
        my $rcode = $known ? 0 : 3;
        $Dns->send(pack('n n n n n n', $id, 0x8180 | $rcode, 1,
                        $answer ? 1 : 0, 0, 0) . $question . $answer);
    }
}
END {
    # reaped, so that it is gone when the file ends ($? is the file's status)
    local $?;
    if ($DnsPid) {
        kill 'KILL', $DnsPid;
        waitpid($DnsPid, 0);
    }
}

$ENV{TEST_NGINX_TLS_PORT1} = $ENV{TEST_NGINX_TLS_PORT} + 1;
$ENV{TEST_NGINX_TLS_PORT2} = $ENV{TEST_NGINX_TLS_PORT} + 2;
$ENV{TEST_NGINX_TLS_PORT3} = $ENV{TEST_NGINX_TLS_PORT} + 3;
$ENV{TEST_NGINX_SOCK} = "$ENV{TEST_NGINX_CERTS}/ws.sock";
$ENV{TEST_NGINX_TLS_PORT4} = $ENV{TEST_NGINX_TLS_PORT} + 4;
$ENV{TEST_NGINX_TLS_PORT5} = $ENV{TEST_NGINX_TLS_PORT} + 5;

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config && defined $block->connect) {
        my $connect = $block->connect;
        $block->set_value("config", <<"_EOC_");
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect($connect)
            if not ok then
                ngx.log(ngx.INFO, "connect: ", err)
                return ngx.exit(444)
            end
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local client = require "nginx.websocket.client"
            local wb = assert(client:new())
            local ok, err = wb:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/proxy")
            if not ok then
                ngx.say("client: ", err)
                return
            end
            wb:send_text("hi")
            local data = wb:recv_frame()
            ngx.say(data)
            wb:send_close()
        }
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: wss upstream, no verification
--- http_config eval: $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT") .. "/"
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
tls:hi
--- error_log
tls upstream got: text hi
--- no_error_log
[error]



=== TEST 2: wss upstream verified against the trusted CA, SNI localhost
--- http_config eval
"ws_proxy_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/ca.crt;\n" . $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT") .. "/",
{ ssl_verify = true, server_name = "localhost" }
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
tls:hi
--- no_error_log
[error]



=== TEST 3: verification fails with the wrong CA
--- http_config eval
"ws_proxy_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/otherca.crt;\n" . $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT") .. "/",
{ ssl_verify = true, server_name = "localhost" }
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
client: failed to receive response header: closed
--- error_log eval
qr/connect: failed connecting to upstream: ssl handshake failed: certificate verify error: \(\d+:unable to (?:get local issuer|verify the first) certificate\)/



=== TEST 4: verification fails when the name does not match (SNI other)
--- http_config eval
"ws_proxy_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/ca.crt;\n" . $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT") .. "/",
{ ssl_verify = true, server_name = "other.example" }
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
client: failed to receive response header: closed
--- error_log
ssl handshake failed: certificate does not match host "other.example"



=== TEST 5: an expired certificate
--- http_config eval
"ws_proxy_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/ca.crt;\n" . $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT1") .. "/",
{ ssl_verify = true, server_name = "localhost" }
--- main_config
env TEST_NGINX_TLS_PORT1;
--- response_body
client: failed to receive response header: closed
--- error_log eval
qr/ssl handshake failed: certificate verify error: \(\d+:certificate has expired\)/



=== TEST 5b: after a failed wss:// connect the handler's log lines are its own
--- http_config eval
"ws_proxy_ssl_trusted_certificate $ENV{TEST_NGINX_CERTS}/otherca.crt;\n" . $::Tls
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect_upstream("wss://127.0.0.1:"
                                                .. os.getenv("TEST_NGINX_TLS_PORT")
                                                .. "/", { ssl_verify = true })
            ngx.log(ngx.INFO, "after the failed connect: ", err)
            ngx.say(ok)
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT;
--- response_body
nil
--- error_log eval
qr/after the failed connect: ssl handshake failed: certificate verify error/
--- no_error_log eval
qr/after the failed connect.*while/



=== TEST 6: a client certificate, required by the upstream
--- http_config eval: $::Tls
--- connect
"wss://127.0.0.1:" .. os.getenv("TEST_NGINX_TLS_PORT2") .. "/", {
    client_cert = assert(require("ngx.ssl").parse_pem_cert(
        io.open(os.getenv("TEST_NGINX_CERTS") .. "/client.crt"):read("*a"))),
    client_priv_key = assert(require("ngx.ssl").parse_pem_priv_key(
        io.open(os.getenv("TEST_NGINX_CERTS") .. "/client.key"):read("*a"))),
}
--- main_config
env TEST_NGINX_TLS_PORT2;
env TEST_NGINX_CERTS;
--- response_body
CN=test-client:hi
--- no_error_log
[error]



=== TEST 7: without the required client certificate the upstream says 400
--- http_config eval: $::Tls
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("wss://127.0.0.1:"
                                       .. os.getenv("TEST_NGINX_TLS_PORT2")
                                       .. "/")
            ngx.log(ngx.INFO, "connect: ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err, res = ws.client("/proxy")
            ngx.say(err, ": ", res.status_line)
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT2;
--- response_body
status 400: HTTP/1.1 400 Bad Request
--- error_log
connect: failed connecting to upstream: bad HTTP response status line: HTTP/1.1 400 Bad Request



=== TEST 8: an IPv6 upstream
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen [::1]:$TEST_NGINX_UPSTREAM_PORT;
        location / {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                local data = wb:recv_frame()
                wb:send_text("v6:" .. data)
                wb:recv_frame()
            }
        }
    }
}
--- connect
"ws://[::1]:" .. os.getenv("TEST_NGINX_UPSTREAM_PORT") .. "/"
--- main_config
env TEST_NGINX_UPSTREAM_PORT;
--- response_body
v6:hi
--- no_error_log
[error]



=== TEST 9: handshake options reach the upstream: headers, origin, protocols
--- config
    location /upstream {
        content_by_lua_block {
            local h = ngx.req.get_headers()
            ngx.log(ngx.INFO, "key: ", h["sec-websocket-key"],
                    ", host: ", h.host, ", origin: ", h.origin,
                    ", x-a: ", h["x-a"], ", x-b: ", h["x-b"],
                    ", protocol: ", h["sec-websocket-protocol"],
                    ", uri: ", ngx.var.request_uri)
            local ws = require "wstest"
            local s = assert(ws.server({
                headers = { "Sec-WebSocket-Protocol: chat.v2" } }))
            s:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err, res = wp:connect_upstream(
                "ws://127.0.0.1:" .. ngx.var.server_port .. "/upstream?q=1",
                { headers = { "X-A: 1", "X-B: two" },
                  host = "chat.example",
                  key = "AAECAwQFBgcICQoLDA0ODw==",
                  origin = "https://app.example",
                  protocols = { "chat.v1", "chat.v2" } })
            ngx.say(ok, " ", err, " ", res:match("Sec%-WebSocket%-Protocol: [^\r]+"))
        }
    }
--- response_body
true nil Sec-WebSocket-Protocol: chat.v2
--- error_log eval
qr/key: AAECAwQFBgcICQoLDA0ODw==, host: chat.example, origin: https:\/\/app.example, x-a: 1, x-b: two, protocol: chat.v1, chat.v2, uri: \/upstream\?q=1/
--- no_error_log
[error]



=== TEST 10: the client's subprotocol offer goes upstream, the choice comes back
--- config
    location /upstream {
        content_by_lua_block {
            ngx.log(ngx.INFO, "offer: ", ngx.var.http_sec_websocket_protocol)
            local ws = require "wstest"
            local s = assert(ws.server({
                headers = { "Sec-WebSocket-Protocol: graphql-ws",
                            "Set-Cookie: affinity=node7" } }))
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
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Protocol: graphql-transport-ws, graphql-ws" } }))
            ngx.say(c.status, " ", c.headers["sec-websocket-protocol"], " ",
                    c.headers["set-cookie"])
            c:send_close(1000)
        }
    }
--- response_body
101 graphql-ws affinity=node7
--- error_log
offer: graphql-transport-ws, graphql-ws
--- no_error_log
[error]



=== TEST 11: an upstream that picks a subprotocol nobody offered fails
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({
                headers = { "Sec-WebSocket-Protocol: evil" } }))
            s:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://127.0.0.1:" .. ngx.var.server_port
                                        .. "/upstream",
                                        { protocols = "chat" }))
        }
    }
--- response_body
nilupstream selected a subprotocol that was not offered: evil



=== TEST 11b: an offer over two header lines is one offer of both
--- config
    location /upstream {
        content_by_lua_block {
            ngx.log(ngx.INFO, "offer: ", ngx.var.http_sec_websocket_protocol)
            local ws = require "wstest"
            local s = assert(ws.server({
                headers = { "Sec-WebSocket-Protocol: chat" } }))
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream")
            ngx.log(ngx.INFO, "connect: ", ok, " ", err)
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Protocol: foo",
                "Sec-WebSocket-Protocol: chat" } }))
            ngx.say(c.status, " ", c.headers["sec-websocket-protocol"])
            c:send_close(1000)
        }
    }
--- response_body
101 chat
--- error_log
offer: foo, chat
connect: true nil
--- no_error_log
[error]



=== TEST 11c: the 101 never names a subprotocol the client did not offer
--- http_config eval
$t::WsProxy::HttpConfig . q{
    log_format proto 'protocol=$ws_proxy_protocol';
}
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({
                headers = { "Sec-WebSocket-Protocol: superchat" } }))
            s:recv_frame()
        }
    }

    location /proxy {
        access_log logs/error.log proto;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream", { protocols = "superchat" }))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, offer in ipairs({ false, "chat" }) do
                local c = assert(ws.client("/proxy", { headers = offer and {
                    "Sec-WebSocket-Protocol: " .. offer } or nil }))
                ngx.say(tostring(offer), ": ", c.status, " ",
                        tostring(c.headers["sec-websocket-protocol"]))
                c:send_close(1000)
                c:recv_frame()
            end
        }
    }
--- response_body
false: 101 nil
chat: 101 nil
--- wait: 0.1
--- error_log
the upstream's subprotocol "superchat" was not offered by the client: not sent to it
protocol=superchat
--- no_error_log
[error]



=== TEST 12: a browser's permessage-deflate offer is not passed on
--- config
    location /upstream {
        content_by_lua_block {
            ngx.log(ngx.INFO, "extensions: ",
                    ngx.var.http_sec_websocket_extensions)
            local ws = require "wstest"
            local s = assert(ws.server())
            local f = s:recv_frame()
            s:send_frame{ opcode = 1, payload = "plain " .. f.payload }
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
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" } }))
            ngx.say(c.status, " ", c.headers["sec-websocket-extensions"])
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000)
        }
    }
--- response_body
101 nil
text:plain hi
--- error_log
extensions: nil
--- no_error_log
[error]



=== TEST 13: connect_timeout against an upstream that never answers the SYN
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local t0 = ngx.now()
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                .. os.getenv("TEST_NGINX_BLACKHOLE_PORT") .. "/",
                { connect_timeout = 300 })
            ngx.update_time()
            ngx.say(ok, " ", err, " ", ngx.now() - t0 < 2)
        }
    }
--- main_config
env TEST_NGINX_BLACKHOLE_PORT;
--- response_body
nil failed to connect: timeout true
--- error_log
upstream timed out while connecting



=== TEST 14: a unix socket upstream, as nginx writes them
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen unix:$TEST_NGINX_SOCK;
        location / {
            content_by_lua_block {
                local server = require "nginx.websocket.server"
                local wb = assert(server:new())
                local data = wb:recv_frame()
                wb:send_text("unix " .. ngx.var.http_host .. " "
                             .. ngx.var.request_uri .. ": " .. data)
                wb:recv_frame()
            }
        }
    }
}
--- connect
"ws://unix:" .. os.getenv("TEST_NGINX_SOCK") .. ":/path?x=1"
--- main_config
env TEST_NGINX_SOCK;
--- response_body
unix localhost /path?x=1: hi
--- no_error_log
[error]



=== TEST 15: an upstream that refuses the upgrade answers the client (a 401 stays a 401)
--- config
    location /upstream {
        content_by_lua_block {
            ngx.status = 401
            ngx.header["WWW-Authenticate"] = 'Bearer realm="ws"'
            ngx.header["X-Reason"] = "no token"
            ngx.header.content_type = "application/json"
            ngx.header.content_length = 19
            ngx.print('{"error":"no auth"}')
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream")
            ngx.log(ngx.INFO, "connect: ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="ws"
X-Reason: no token
Content-Type: application/json
--- response_body chomp
{"error":"no auth"}
--- error_log
connect: failed connecting to upstream: bad HTTP response status line: HTTP/1.1 401 Unauthorized
--- no_error_log
[error]



=== TEST 15b: a refusal's body that comes after its head is relayed whole
--- config
    location /upstream {
        content_by_lua_block {
            ngx.status = 403
            ngx.header.content_length = 22
            ngx.send_headers()
            ngx.flush(true)
            ngx.sleep(0.1)
            ngx.print("forbidden: no ticket\r\n")
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream", { timeout = 1000 })
            ngx.log(ngx.INFO, "connect: ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- error_code: 403
--- response_headers
Content-Length: 22
--- response_body eval
"forbidden: no ticket\r\n"
--- no_error_log
[error]



=== TEST 15c: a chunked refusal's body is relayed decoded, with its length
--- config
    location /upstream {
        content_by_lua_block {
            ngx.status = 403
            ngx.print("forbidden: ")
            ngx.flush(true)
            ngx.sleep(0.1)
            ngx.print("no ticket")
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream", { timeout = 1000 })
            ngx.log(ngx.INFO, "connect: ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- error_code: 403
--- response_headers
Content-Length: 20
Transfer-Encoding:
--- response_body chomp
forbidden: no ticket
--- no_error_log
[error]



=== TEST 15d: a refusal's body that does not end in read_timeout is left out
--- config
    location /upstream {
        content_by_lua_block {
            ngx.status = 403
            ngx.header.content_length = 100
            ngx.print("partial")
            ngx.flush(true)
            ngx.sleep(2)
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/upstream", { timeout = 1000 })
            ngx.log(ngx.INFO, "connect: ", err)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- error_code: 403
--- response_headers
Content-Length: 0
--- response_body chomp
--- error_log
the body of the upstream's 403 response did not end within the handshake buffer and read_timeout: relayed without it
connect: failed connecting to upstream: bad HTTP response status line: HTTP/1.1 403 Forbidden
--- no_error_log
[error]



=== TEST 16: forward_headers, x_forwarded and forward_path
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT4;
        location /proxy {
            content_by_lua_block {
                local h = ngx.req.get_headers()
                ngx.log(ngx.INFO, "cookie: ", h.cookie, ", authorization: ",
                        h.authorization, ", x-other: ", h["x-other"],
                        ", xff: ", h["x-forwarded-for"], ", proto: ",
                        h["x-forwarded-proto"], ", uri: ",
                        ngx.var.request_uri, ", host: ", h.host)
                local ws = require "wstest"
                local s = assert(ws.server())
                s:recv_frame()
            }
        }
    }
}
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:"
                              .. os.getenv("TEST_NGINX_TLS_PORT4")
                              .. "/ignored", {
                forward_headers = { "Cookie", "Authorization" },
                x_forwarded = true,
                forward_path = true,
            }))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy?room=7", { headers = {
                "Cookie: session=abc", "Authorization: Bearer t0k3n",
                "X-Other: not forwarded", "X-Forwarded-For: 10.1.2.3" } }))
            ngx.say(c.status)
            c:send_close(1000)
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT4;
--- response_body
101
--- error_log eval
qr/cookie: session=abc, authorization: Bearer t0k3n, x-other: nil, xff: 10.1.2.3, 127.0.0.1, proto: http, uri: \/proxy\?room=7, host: 127.0.0.1:\d+/
--- no_error_log
[error]



=== TEST 16b: x_forwarded: the client's own X-Real-IP and X-Forwarded-* are left out, X-Forwarded-For appended to
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT4;
        location /proxy {
            content_by_lua_block {
                local h = ngx.req.get_headers()
                local function all(v)
                    return type(v) == "table" and table.concat(v, " | ") or v
                end
                ngx.log(ngx.INFO, "real-ip: ", all(h["x-real-ip"]),
                        ", xff: ", all(h["x-forwarded-for"]), ", proto: ",
                        all(h["x-forwarded-proto"]), ", xhost: ",
                        all(h["x-forwarded-host"]), ", cookie: ", h.cookie,
                        ", end")
                local ws = require "wstest"
                local s = assert(ws.server())
                s:recv_frame()
            }
        }
    }
}
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:"
                              .. os.getenv("TEST_NGINX_TLS_PORT4")
                              .. "/proxy", {
                forward_headers = true,
                x_forwarded = true,
            }))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { headers = {
                "Cookie: session=abc", "X-Real-IP: 6.6.6.6",
                "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example",
                "X-Forwarded-For: 10.1.2.3" } }))
            ngx.say(c.status)
            c:send_close(1000)
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT4;
--- response_body
101
--- error_log
real-ip: 127.0.0.1, xff: 10.1.2.3, 127.0.0.1, proto: http, xhost: localhost, cookie: session=abc, end
--- no_error_log
[error]



=== TEST 16c: handshake_buffer_size bounds the upstream's response head, as proxy_buffer_size: a 3 KB response header passes with the default 8k (the buffer starts at 1k and grows), a 9 KB one fails, passes with a larger buffer from new() or connect(); a 7.9 KB Cookie passes with the default (the request's buffer grows to fit)
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT4;
        location /proxy {
            content_by_lua_block {
                ngx.log(ngx.INFO, "cookie of ", #(ngx.var.http_cookie or ""))
                local ws = require "wstest"
                local big = ngx.var.arg_big
                            and { "X-Big: " .. string.rep("y", 9000) }
                            or ngx.var.arg_mid
                            and { "X-Mid: " .. string.rep("m", 3000) }
                local s = assert(ws.server({ headers = big }))
                s:recv_frame()
            }
        }
    }
}
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local size = tonumber(ngx.var.arg_size)
            local wp = assert(proxy.new({
                handshake_buffer_size = ngx.var.arg_new and size or nil }))
            local ok, err = wp:connect("ws://127.0.0.1:"
                                       .. os.getenv("TEST_NGINX_TLS_PORT4")
                                       .. "/proxy"
                                       .. (ngx.var.arg_big and "?big=1"
                                           or ngx.var.arg_mid and "?mid=1"
                                           or ""), {
                forward_headers = { "Cookie" },
                handshake_buffer_size = not ngx.var.arg_new and size or nil,
            })
            if not ok then
                ngx.log(ngx.INFO, "connect: ", err)
                return ngx.exit(502)
            end
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local cookie = "Cookie: c=" .. string.rep("x", 7900)
            for _, path in ipairs{ "/proxy", "/proxy?mid=1", "/proxy?big=1",
                                   "/proxy?big=1&size=16384",
                                   "/proxy?big=1&size=16384&new=1" } do
                -- the Cookie with the first only: the others start at 1k
                local c, err = ws.client(path, { headers = path == "/proxy"
                                                           and { cookie }
                                                           or nil })
                ngx.say(path, ": ", c and c.status or err)
                if c then
                    c:send_close(1000)
                end
            end
            local proxy = require "resty.websocket.proxy"
            ngx.say(select(2, pcall(proxy.new,
                                    { handshake_buffer_size = 100 })))
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT4;
--- response_body
/proxy: 101
/proxy?mid=1: 101
/proxy?big=1: status 502
/proxy?big=1&size=16384: 101
/proxy?big=1&size=16384&new=1: 101
opts.handshake_buffer_size must be a number >= 1024
--- error_log
failed to receive response header: too large
cookie of 7902
--- no_error_log
[error]



=== TEST 17: wss towards the client: nginx's own listen ssl, end to end
--- http_config eval
$::Tls . q{
    server {
        listen $TEST_NGINX_TLS_PORT3 ssl;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        location /wss {
            content_by_lua_block {
                local proxy = require "resty.websocket.proxy"
                local wp = assert(proxy.new())
                assert(wp:connect(proxy._tests.echo))
                wp:execute()
            }
        }
    }
}
--- config
    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local port = tonumber(os.getenv("TEST_NGINX_TLS_PORT3"))
            local c = assert(ws.client("/wss", { port = port, ssl = true }))
            ngx.say(c.status)
            c:send_text("over tls")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000)
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT3;
--- response_body
101
text:over tls
--- no_error_log
[error]



=== TEST 18: a host name resolved through nginx's resolver (a test DNS server)
--- http_config eval
$t::WsProxy::HttpConfig . "resolver 127.0.0.1:$ENV{TEST_NGINX_DNS_PORT} ipv6=off;\n"
--- connect
"ws://echo.test:" .. os.getenv("TEST_NGINX_UPSTREAM_PORT") .. "/echo"
--- main_config
env TEST_NGINX_UPSTREAM_PORT;
--- response_body
hi
--- error_log
frame type: text, payload: "hi"
--- no_error_log
[error]



=== TEST 19: a name the DNS server does not know
--- http_config eval
$t::WsProxy::HttpConfig . "resolver 127.0.0.1:$ENV{TEST_NGINX_DNS_PORT} ipv6=off;\n"
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("ws://nowhere.test/"))
        }
    }
--- response_body
nilfailed to connect: "nowhere.test" could not be resolved (3: Host not found)



=== TEST 20: a TLS handshake the upstream refuses gives OpenSSL's alert
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS_PORT5 ssl;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_protocols TLSv1.2;
        # an ECDSA-only suite with an RSA key: no cipher can be agreed
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
        location / { return 404; }
    }
}
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(wp:connect_upstream("wss://127.0.0.1:"
                                        .. os.getenv("TEST_NGINX_TLS_PORT5")
                                        .. "/"))
        }
    }
--- main_config
env TEST_NGINX_TLS_PORT5;
--- response_body
nilssl handshake failed: handshake failed (received alert: handshake failure)



=== TEST 21: a handler that fails after a wss connect() leaves the upstream a 1011 close over TLS
--- http_config eval: $::Tls
--- main_config
env TEST_NGINX_TLS_PORT;
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("wss://127.0.0.1:"
                              .. os.getenv("TEST_NGINX_TLS_PORT") .. "/"))
            error("handler failed")
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            ngx.sleep(0.05)
        }
    }
--- response_body
close:1011:Internal Error
--- error_log
tls upstream got: close Internal Error
