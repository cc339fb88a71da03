# vim:set ts=4 sts=4 sw=4 et ft=:

# Log injection: a client's or an upstream's bytes in a log line of the
# module (C) or of the Lua library come out with every byte below 0x20,
# and 0x7f, as \xNN.  Every block sends a line break followed by a forged
# line ("FORGED ...", or the issue's [alert]); no line of error.log may
# start with it, and the escaped text must be there.  One block per family
# of log lines: URIs of ws_proxy_pass, the client's handshake headers and
# extension offers, the upstream's status line and headers, close reasons
# (C's lines and Lua's), hook errors, the debug frame lines, connect
# errors returned to Lua.

use lib '.';
use t::WsProxy;

plan 'no_plan';

# the upstreams of the blocks: none logs what it receives
our $Peers = q{
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f = s:recv_frame()
                if not f then
                    return
                end
                if f.opcode == 8 then
                    s:send_close(f.code, f.reason)
                    return
                end
                s:send_frame{ opcode = f.opcode, payload = f.payload }
            end
        }
    }

    # the upstream closes first, with a reason of its own
    location /closer {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            s:send_close(1000, "bye\nFORGED [alert] by the upstream")
            s:recv_frame()
        }
    }

    # a raw head, given by ?head= (ngx.unescape_uri'd; ACCEPT is replaced
    # by the key's Sec-WebSocket-Accept)
    location /head {
        content_by_lua_block {
            local key = ngx.var.http_sec_websocket_key or ""
            local accept = ngx.encode_base64(ngx.sha1_bin(key
                .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
            local head = ngx.unescape_uri(ngx.var.arg_head)
            local sock = assert(ngx.req.socket(true))
            sock:send((head:gsub("ACCEPT", accept)) .. "\r\n\r\n")
            ngx.sleep(0.2)
        }
    }
};

add_block_preprocessor(sub {
    my $block = shift;

    if (defined $block->config) {
        $block->set_value("config", $Peers . $block->config);
    }

    # No line of error.log starts with the forged text.  The escaped lines
    # hold "[alert]" in the middle: t/WsProxy.pm's "[alert]" becomes a
    # real (or forged) alert line, "[alert]" after a line's timestamp.
    my $nel = $block->no_error_log;
    my @nel = ref $nel eq 'ARRAY' ? @$nel
            : ref $nel ? ($nel)
            : defined $nel ? split(/\n/, $nel) : ();

    push @nel, '[alert]';
    @nel = map { $_ eq '[alert]'
                 ? qr{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[alert\]} : $_ }
           @nel;

    $block->set_value("no_error_log", [ @nel, qr/^FORGED/ ]);
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the issue's request: ws_proxy_pass ws://host$uri, $uri decoded
--- allowed_levels: [alert]
--- config
    location /uriv/ {
        ws_proxy_pass ws://127.0.0.1:$server_port/up$uri;
    }

    # the upstream: says what it got, encoded as it came, and refuses
    location /up/ {
        content_by_lua_block {
            ngx.log(ngx.INFO, "upstream got: ", ngx.var.request_uri)
            ngx.exit(404)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/uriv/x%0a2026/12/07%2004:21:30%20"
                                     .. "[alert]%201#1:%20worker%20process"
                                     .. "%2099%20exited%20on%20signal%2011")
            ngx.say(err)
        }
    }
--- response_body
status 404
--- error_log eval
[
    qr{upstream got: /up/uriv/x%0A2026/12/07%2004:21:30%20%5Balert%5D%201\b},
    "ws_proxy_pass: the upstream refused the upgrade with 404, relayed",
]



=== TEST 2: ws_proxy_pass: a host from a decoded variable, "bad websocket uri"
--- allowed_levels: [alert]
--- config
    location /proxy {
        set_by_lua_block $h { return ngx.unescape_uri(ngx.var.arg_h) }
        ws_proxy_pass ws://$h/up;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/proxy?h=a%0aFORGED%20[alert]%20x")
            ngx.say(err)
        }
    }
--- response_body
status 500
--- error_log
ws_proxy_pass: bad websocket uri "ws://a\x0aFORGED [alert] x/up"



=== TEST 3: the client's handshake headers (a control byte in Upgrade)
--- allowed_levels: [alert]
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }
--- raw_request eval
"GET /proxy HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\x1b[2J\x7f\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
Connection: close\r
\r
"
--- error_code: 400
--- ignore_response_body
--- error_log
bad "upgrade" request header: websocket\x1b[2J\x7f



=== TEST 4: the client's permessage-deflate offers, none accepted
--- allowed_levels: [alert]
--- config
    location /proxy {
        ws_proxy_deflate on;
        ws_proxy_pass ws://127.0.0.1:$server_port/up;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate; x=\"\x01\"",
            } }))
            ngx.say(c.headers["sec-websocket-extensions"])
            c:send_close(1000, "done")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
nil
close:1000:done
--- error_log
no permessage-deflate offer of the client accepted: "permessage-deflate; x="\x01""



=== TEST 5: the upstream's status line: ws_proxy_pass and connect()'s err
--- allowed_levels: [alert]
--- config
    location /pass {
        ws_proxy_pass ws://127.0.0.1:$server_port/head?head=HTTP/1.1%201O1%20OK%1b%5B2J%7f%0aFORGED%20%5Balert%5D%20status;
    }

    location /lua {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = proxy.new()
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                .. ngx.var.server_port .. "/head?head=HTTP/1.1%201O1%20OK%1b%5B2J%7f"
                .. "%0aFORGED%20%5Balert%5D%20lua")
            ngx.log(ngx.ERR, "lua connect: ", err)
            ngx.exit(502)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/pass")
            ngx.say(err)
            c, err = ws.client("/lua")
            ngx.say(err)
        }
    }
--- response_body
status 502
status 502
--- error_log
ws_proxy_pass: bad HTTP response status line: HTTP/1.1 1O1 OK\x1b[2J\x7f,
lua connect: bad HTTP response status line: HTTP/1.1 1O1 OK\x1b[2J\x7f,



=== TEST 6: the upstream's headers: a subprotocol with a control byte
--- allowed_levels: [alert]
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port/head?head=HTTP/1.1%20101%20Switching%20Protocols%0d%0aUpgrade:%20websocket%0d%0aConnection:%20Upgrade%0d%0aSec-WebSocket-Accept:%20ACCEPT%0d%0aSec-WebSocket-Protocol:%20chat%1b%5B2J;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c, err = ws.client("/proxy", { headers = {
                "Sec-WebSocket-Protocol: chat",
            } })
            ngx.say(c and c.status or err)
        }
    }
--- response_body
status 502
--- error_log eval
qr/ws_proxy_pass: .*subprotocol.* chat\\x1b\[2J/



=== TEST 7: a close reason, C's line (ws_proxy_pass), from either peer
--- allowed_levels: [alert]
--- config
    location /proxy {
        ws_proxy_pass ws://127.0.0.1:$server_port$arg_to;
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy?to=/up"))
            c:send_close(1000, "done\nFORGED [alert] by the client")
            ngx.say(ws.describe(c:recv_frame()))
            c = assert(ws.client("/proxy?to=/closer"))
            local f = c:recv_frame()
            ngx.say(f.code, " ", ngx.escape_uri(f.reason))
            c:send_close(1000, "ok")
        }
    }
--- response_body
close:1000:done
FORGED [alert] by the client
1000 bye%0AFORGED%20%5Balert%5D%20by%20the%20upstream
--- error_log
forwarding close with code: 1000, payload: done\x0aFORGED [alert] by the client
forwarding close with code: 1000, payload: bye\x0aFORGED [alert] by the upstream



=== TEST 8: a close reason, Lua's line (the library without a hook)
--- allowed_levels: [alert]
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            assert(wp:execute())
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_close(1000, "done\r\nFORGED [alert] by the client")
            local f = c:recv_frame()
            ngx.say(f.code)
        }
    }
--- response_body
1000
--- error_log
forwarding close with code: 1000, payload: done\x0d\x0aFORGED [alert] by the client



=== TEST 9: a hook's error that holds a payload; the debug frame lines
--- allowed_levels: [alert]
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({
                debug = true,
                on_frame = function(proxy, role, typ, payload)
                    if payload == "boom\nFORGED [alert] hook" then
                        error("cannot take " .. payload, 0)
                    end
                    return payload
                end,
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            local ok, err = wp:execute()
            ngx.log(ngx.ERR, "execute: ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("hi\1\27[2J")
            ngx.say(ngx.escape_uri(c:recv_frame().payload))
            c:send_text("boom\nFORGED [alert] hook")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- log_level: debug
--- response_body
hi%01%1B%5B2J
close:1011:Internal Error
--- error_log
on_frame handler failed for a frame from client: cannot take boom\x0aFORGED [alert] hook
execute: on_frame handler failed for a frame from client: cannot take boom\x0aFORGED [alert] hook
payload: "hi\1\27[2J" (len: 7)
payload: "boom\\nFORGED [alert] hoo[...]" (len: 24)



=== TEST 10: connect_upstream(): a URI's bytes in err and in the debug lines
--- allowed_levels: [alert]
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = proxy.new({ debug = true })
            local ok, err = wp:connect_upstream("ws://a\nFORGED [alert] x/")
            ngx.log(ngx.ERR, "lua connect: ", err)
            ngx.say(ok)
        }
    }
--- log_level: debug
--- response_body
nil
--- error_log
connecting to "ws://a\x0aFORGED [alert] x/" upstream
lua connect: bad websocket uri "ws://a\x0aFORGED [alert] x/"
