# vim:set ts=4 sts=4 sw=4 et ft=:

# The tap's refusals and its directive (issue 25, item 3), one nginx
# without a master: a tap needs a WebSocket upgrade, control on the
# location, a session that is open; ws_proxy_tap_payloads' bounds.  The tap
# at work, across two workers: t/039-tap.t (t/e2e/taps.py).

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $Http = $t::WsProxy::HttpConfig . "    ws_proxy_zone wsp 1m;\n";

our $Status = q{
    location = /console { ws_proxy_status control; }
    location = /ro { ws_proxy_status; }
};

# the upstream of the blocks that proxy: it echoes text
our $Echo = q{
    location /echo {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f = s:recv_frame()
                if not f or f.opcode == 8 then
                    return
                end
                s:send_text(f.payload)
            end
        }
    }
};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $Http);
    }

    if (!defined $block->config) {
        $block->set_value("config", $Status);

    } elsif ($block->config =~ m{/echo;|"/echo"}) {
        $block->set_value("config", $block->config . $Echo);
    }
});

run_tests();

__DATA__

=== TEST 1: a tap where the location does not allow control: 403, in JSON
--- request
GET /ro?tap=1-1
--- more_headers
Upgrade: websocket
Connection: Upgrade, close
Sec-WebSocket-Version: 13
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
--- error_code: 403
--- response_headers
Content-Type: application/json
--- response_body
{"error":"control is not allowed here"}
--- no_error_log
[error]



=== TEST 2: an id that is no session's: 404
--- request
GET /console?tap=1-1
--- more_headers
Upgrade: websocket
Connection: Upgrade, close
Sec-WebSocket-Version: 13
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
--- error_code: 404
--- response_body
{"error":"no session (a bad id)"}
--- no_error_log
[error]



=== TEST 3: a tap on an open session without an upgrade: 400, and its slot given back
--- config
    location = /console { ws_proxy_status control; }
    location /ws {
        ws_proxy_tap_payloads 4096;
        ws_proxy_pass ws://127.0.0.1:$server_port/echo;
    }
    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/ws"))
            c:send_text("hi")
            assert(c:recv_frame())
            local list = require("resty.websocket.proxy").sessions({})
            local id = list[1].id
            for i = 1, 5 do
                local r = ngx.location.capture("/console",
                                               { args = "tap=" .. id })
                ngx.print(r.status, " ", r.body)
            end
            ngx.say("taps: ", require("resty.websocket.proxy")
                              .sessions({})[1].taps)
            c:send_close(1000, "bye")
        }
    }
--- request
GET /t
--- response_body
400 {"error":"a tap is a WebSocket upgrade (HTTP/1.1)"}
400 {"error":"a tap is a WebSocket upgrade (HTTP/1.1)"}
400 {"error":"a tap is a WebSocket upgrade (HTTP/1.1)"}
400 {"error":"a tap is a WebSocket upgrade (HTTP/1.1)"}
400 {"error":"a tap is a WebSocket upgrade (HTTP/1.1)"}
taps: 0
--- no_error_log
[error]



=== TEST 4: nginx -t: ws_proxy_tap_payloads above 4096
--- config
    location /ws {
        ws_proxy_tap_payloads 4097;
        ws_proxy_pass ws://127.0.0.1:1/;
    }
--- must_die
--- allowed_levels: [emerg]
--- error_log
value must be between 0 and 4096



=== TEST 5: new()'s tap_payloads wins over ws_proxy_tap_payloads (both ways); a bad value is a clear error
--- config
    location = /console { ws_proxy_status control; }
    location /ws {
        ws_proxy_tap_payloads 8;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local n = tonumber(ngx.var.arg_n)
            local p = assert(proxy.new({ tap_payloads = n }))
            assert(p:connect("ws://127.0.0.1:" .. ngx.var.server_port
                             .. "/echo"))
            p:execute()
        }
    }
    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local proxy = require "resty.websocket.proxy"

            local function tapped(args)
                local c = assert(ws.client("/ws?" .. args))
                c:send_text("hi")
                assert(c:recv_frame())
                local id = proxy.sessions({ state = "open" })[1].id
                local tap = assert(ws.client("/console?tap=" .. id))
                ngx.sleep(0.6)      -- the session's worker attaches it
                c:send_text("abcdefghijkl")
                assert(c:recv_frame())
                local f = assert(tap:recv_frame())
                local j = f.payload
                ngx.say(args, ": ", j:match('"from":"(%a+)"'), " ",
                        j:match('"len":(%d+)'), " ",
                        tostring(j:match('"payload":"(%a*)"')), " ",
                        tostring(j:find('"cut":true', 1, true) ~= nil))
                c:send_close(1000, "")
                c:recv_frame()
                tap:recv_frame()
                ngx.sleep(0.05)
            end

            tapped("n=3")
            tapped("n=0")
            tapped("none")
            ngx.say(pcall(proxy.new, { tap_payloads = 4097 }))
            ngx.say(pcall(proxy.new, { tap_payloads = 1.5 }))
            ngx.say(pcall(proxy.new, { tap_payloads = "8" }))
            ngx.say((pcall(proxy.new, { tap_payloads = 4096 })))
        }
    }
--- request
GET /t
--- response_body_like eval
qr/^n=3: client 12 abc true
n=0: client 12 nil false
none: client 12 abcdefgh true
false.*opts.tap_payloads must be an integer from 0 to 4096
false.*opts.tap_payloads must be an integer from 0 to 4096
false.*opts.tap_payloads must be an integer from 0 to 4096
true
$/
--- no_error_log
[error]
[alert]
