# vim:set ts=4 sts=4 sw=4 et ft=:

# Backpressure over TLS, towards a wss:// upstream and towards a TLS client:
# a blocked SSL_write() must be retried the way it was made, while the pump
# moves unsent bytes to the front of its input buffer.

use lib '.';
use t::WsRaw;

plan 'no_plan';

use_test_certs();

# a raw upstream that sleeps before it reads, so that the proxy's sends
# to it block
our $TlsUpstream = $t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local s = assert(ws.server({ timeout = 20000 }))
                ngx.sleep(0.5)
                assert(s:check_numbered(1024))
            }
        }
    }
};

run_tests();

__DATA__

=== TEST 1: a wss upstream that reads late: TLS sends block, the input buffer is compacted under them, all frames arrive in order
--- main_config
env TEST_NGINX_TLS_PORT;
--- http_config eval: $::TlsUpstream
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local opts = {}
            if ngx.var.arg_hook then
                opts.on_frame = function(_, _, _, payload) return payload end
            end
            local wp = assert(proxy.new(opts))
            assert(wp:connect("wss://127.0.0.1:"
                              .. os.getenv("TEST_NGINX_TLS_PORT") .. "/"))
            local ok, err = wp:execute()
            if not ok then
                ngx.log(ngx.ERR, "execute: ", err)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, path in ipairs{ "/proxy", "/proxy?hook=1" } do
                local c = assert(ws.client(path, { timeout = 20000 }))
                -- 1024 frames of 16,000 bytes, so that frames straddle the end
                -- of the proxy's input buffer, in one write
                assert(c:send_numbered(1024, 16000))
                ngx.say(path, ": ", ws.describe(c:recv_frame()))
                c:send_close(1000)
                c:recv_frame()
                c:close()
            end
        }
    }
--- timeout: 30
--- response_body
/proxy: text:1024 frames, 16384000 bytes, 0 bad
/proxy?hook=1: text:1024 frames, 16384000 bytes, 0 bad
--- no_error_log
[error]
[alert]



=== TEST 2: a TLS client that reads late: the proxy's sends to it go through nginx's TLS buffer, block, then drain in order
--- main_config
env TEST_NGINX_TLS_PORT;
--- http_config eval
$t::WsProxy::HttpConfig . q{
    server {
        listen $TEST_NGINX_TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;

        location /proxy {
            content_by_lua_block {
                local proxy = require "resty.websocket.proxy"
                local opts = {}
                if ngx.var.arg_hook then
                    opts.on_frame = function(_, _, _, payload)
                        return payload
                    end
                end
                local wp = assert(proxy.new(opts))
                assert(wp:connect("ws://127.0.0.1:$TEST_NGINX_SERVER_PORT"
                                  .. "/stream"))
                local ok, err = wp:execute()
                if not ok then
                    ngx.log(ngx.ERR, "execute: ", err)
                end
            }
        }
    }
}
--- config
    location /stream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ timeout = 20000 }))
            assert(s:send_numbered(1024, 16000))
            local f, err = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
            s:send_close(1000)
            s:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local port = tonumber(os.getenv("TEST_NGINX_TLS_PORT"))
            for _, path in ipairs{ "/proxy", "/proxy?hook=1" } do
                local c = assert(ws.client(path, { port = port, ssl = true,
                                                   timeout = 20000 }))
                ngx.sleep(0.5)
                local ok, err = c:check_numbered(1024)
                ngx.say(path, ": ", ok and "read all" or err)
                c:close()
            end
        }
    }
--- timeout: 30
--- response_body
/proxy: read all
/proxy?hook=1: read all
--- grep_error_log eval: qr/upstream got: [^,]+/
--- grep_error_log_out
upstream got: text:1024 frames
upstream got: text:1024 frames
--- no_error_log
[error]
[alert]
[crit]
