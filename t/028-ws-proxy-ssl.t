# vim:set ts=4 sts=4 sw=4 et ft=:

# The location's TLS context towards upstreams: ws_proxy_ssl_protocols,
# ws_proxy_ssl_ciphers, ws_proxy_ssl_verify_depth, for ws_proxy_pass and
# for Lua's connect("wss://...").

use lib '.';
use t::WsProxy;

plan 'no_plan';

use_test_certs();

# after the ones t/009, t/024 and t/025 take
$ENV{TEST_NGINX_TLS13_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 7;
$ENV{TEST_NGINX_TLS12_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 8;
$ENV{TEST_NGINX_CHAIN_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 9;

# upstreams: TLSv1.3 only; TLSv1.2 only with a single cipher (each says
# which protocol and cipher it got); one whose certificate an intermediate
# CA issued.
our $Config = $t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS13_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_protocols TLSv1.3;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text(ngx.var.ssl_protocol)
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }

    server {
        listen $TEST_NGINX_TLS12_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text(ngx.var.ssl_protocol .. " " .. ngx.var.ssl_cipher)
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }

    server {
        listen $TEST_NGINX_CHAIN_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/chain.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/leaf.key;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server())
                s:send_text("chain")
                local f = s:recv_frame()
                s:send_close(f and f.code or 1000, "bye")
            }
        }
    }
};

# --- pass: the directives of a ws_proxy_pass location, and a client of it
# that prints the upstream's first frame or the status it got

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $Config);
    }

    if ($block->can('pass') && defined $block->pass) {
        my $pass = $block->pass;
        $block->set_value("config", <<"_EOC_");
    location /proxy {
$pass
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/proxy")
            if not c then
                ngx.say(err)
                return
            end
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
_EOC_
    }
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: without the directives: the worker's context, TLSv1.3
--- pass
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
--- response_body
text:TLSv1.3
close:1000:bye
--- no_error_log
[error]



=== TEST 2: ws_proxy_ssl_protocols TLSv1.2 towards a TLSv1.3-only upstream: 502
--- pass
        ws_proxy_ssl_protocols TLSv1.2;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
--- response_body
status 502
--- error_log eval
qr/ws_proxy_pass: ssl handshake failed: handshake failed \(received alert: protocol version\)/



=== TEST 3: ws_proxy_ssl_protocols TLSv1.2 towards an upstream that accepts it
--- pass
        ws_proxy_ssl_protocols TLSv1.2;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS12_PORT/;
--- response_body
text:TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256
close:1000:bye
--- no_error_log
[error]



=== TEST 4: from the server level, with a location of its own after it
--- config
    ws_proxy_ssl_protocols TLSv1.2;

    location /proxy {
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
    }

    location /other {
        ws_proxy_ssl_protocols TLSv1.3;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/proxy")
            ngx.say(err)
            c = assert(ws.client("/other"))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "done")
            c:recv_frame()
        }
    }
--- response_body
status 502
text:TLSv1.3
--- error_log
received alert: protocol version



=== TEST 5: ws_proxy_ssl_ciphers the upstream does not share: the handshake fails
--- pass
        ws_proxy_ssl_ciphers ECDHE-RSA-AES256-GCM-SHA384;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS12_PORT/;
--- response_body
status 502
--- error_log eval
qr/ws_proxy_pass: ssl handshake failed: handshake failed \(received alert: handshake failure\)/



=== TEST 6: ws_proxy_ssl_ciphers with one it shares
--- pass
        ws_proxy_ssl_ciphers ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS12_PORT/;
--- response_body
text:TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256
close:1000:bye
--- no_error_log
[error]



=== TEST 7: ws_proxy_ssl_verify_depth 0: an intermediate CA is one too many
--- pass
        ws_proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
        ws_proxy_ssl_verify on;
        ws_proxy_ssl_name localhost;
        ws_proxy_ssl_verify_depth 0;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_CHAIN_PORT/;
--- response_body
status 502
--- error_log eval
# OpenSSL 3 stops looking for the issuer there; older ones said "too long"
qr/ws_proxy_pass: ssl handshake failed: certificate verify error: \(\d+:(?:unable to get local issuer certificate|certificate chain too long)\)/



=== TEST 8: the default depth, 1, verifies it
--- pass
        ws_proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
        ws_proxy_ssl_verify on;
        ws_proxy_ssl_name localhost;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_CHAIN_PORT/;
--- response_body
text:chain
close:1000:bye
--- no_error_log
[error]



=== TEST 9: Lua's connect("wss://...") takes the location's ws_proxy_ssl_protocols
--- config
    location /t {
        ws_proxy_ssl_protocols TLSv1.2;

        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            for _, p in ipairs{ "$TEST_NGINX_TLS13_PORT",
                                "$TEST_NGINX_TLS12_PORT" } do
                local wp = assert(proxy.new())
                local ok, err = wp:connect_upstream("wss://127.0.0.1:" .. p
                                                    .. "/")
                ngx.say(ok, " ", err)
            end
        }
    }
--- response_body
nil ssl handshake failed: handshake failed (received alert: protocol version)
true nil
--- no_error_log
[alert]



=== TEST 10: an invalid protocol name is refused at start
--- config
    location /proxy {
        ws_proxy_ssl_protocols TLSv1.2 TLSv9;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
invalid value "TLSv9"



=== TEST 11: an invalid cipher list is refused at start
--- config
    location /proxy {
        ws_proxy_ssl_ciphers NO-SUCH-CIPHER;
        ws_proxy_pass wss://127.0.0.1:$TEST_NGINX_TLS13_PORT/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
SSL_CTX_set_cipher_list("NO-SUCH-CIPHER") failed
