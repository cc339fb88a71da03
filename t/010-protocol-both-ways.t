# vim:set ts=4 sts=4 sw=4 et ft=:

# t/005 again, table-driven, so that every violation is seen from both
# sides: for each case a fresh session is opened, the bad frame is sent by
# the client (TEST 1) or by the upstream (TEST 2), and the close frame each
# peer receives is printed.

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $Cases = <<'_EOC_';
        local ws = require "wstest"
        local long = string.rep("p", 126)
        cases = {
            rsv         = { opcode = 1, rsv = 2, payload = "x" },
            opcode4     = { opcode = 4, payload = "x" },
            opcode15    = { opcode = 15, payload = "x" },
            longping    = { opcode = 9, payload = long },
            fragping    = { opcode = 9, fin = false, payload = "x" },
            orphan      = { opcode = 0, payload = "x" },
            msb         = { opcode = 2, len = 1, len_bytes = 8,
                            len_msb = true },
            close1      = { opcode = 8, payload = "x" },
            close1004   = { opcode = 8, payload = ws.close_payload(1004) },
            close2999   = { opcode = 8, payload = ws.close_payload(2999) },
            close5000   = { opcode = 8, payload = ws.close_payload(5000) },
            closeutf8   = { opcode = 8,
                            payload = ws.close_payload(1000, "\xc0\xaf") },
            badtext     = { hook = true, opcode = 1, payload = "\xed\xa0\x80" },
        }
        order = { "rsv", "opcode4", "opcode15", "longping", "fragping",
                  "orphan", "msb", "close1", "close1004", "close2999",
                  "close5000", "closeutf8", "badtext" }
_EOC_

run_tests();

__DATA__

=== TEST 1: every violation sent by the client
--- http_config eval
$t::WsProxy::HttpConfig . "init_by_lua_block {\n$::Cases\n}"
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            local f, err = s:recv_frame()
            ngx.log(ngx.INFO, "case ", ngx.var.arg_case, " upstream got: ",
                    ws.describe(f, err))
            if f and f.opcode == 8 then
                s:send_close(f.code)
            end
        }
    }

    location /proxy {
        content_by_lua_block {
            local case = cases[ngx.var.arg_case]
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ on_frame = case.hook and
                function(p, r, t, payload) return payload end or nil }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream?" .. ngx.var.args))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, name in ipairs(order) do
                local c = assert(ws.client("/proxy?case=" .. name))
                local f = {}
                for k, v in pairs(cases[name]) do f[k] = v end
                c:send_frame(f)
                ngx.say(name, ": client got ", ws.describe(c:recv_frame()))
                c:close()
            end
        }
    }
--- timeout: 15
--- response_body
rsv: client got close:1002:rsv bits set
opcode4: client got close:1002:reserved opcode
opcode15: client got close:1002:reserved opcode
longping: client got close:1002:control frame too long
fragping: client got close:1002:fragmented control frame
orphan: client got close:1002:continuation without message
msb: client got close:1002:64-bit payload length with the most significant bit set
close1: client got close:1002:close frame with a 1-byte payload
close1004: client got close:1002:invalid close status code
close2999: client got close:1002:invalid close status code
close5000: client got close:1002:invalid close status code
closeutf8: client got close:1007:close reason is not UTF-8
badtext: client got close:1007:invalid UTF-8 text
--- grep_error_log eval: qr/upstream got: close:\d+/
--- grep_error_log_out eval
"upstream got: close:1001\n" x 13
--- no_error_log
[error]



=== TEST 2: every violation sent by the upstream
--- http_config eval
$t::WsProxy::HttpConfig . "init_by_lua_block {\n$::Cases\n}"
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            local f = {}
            for k, v in pairs(cases[ngx.var.arg_case]) do f[k] = v end
            s:send_frame(f)
            local got, err = s:recv_frame()
            ngx.log(ngx.INFO, "case ", ngx.var.arg_case, " upstream got: ",
                    ws.describe(got, err))
        }
    }

    location /proxy {
        content_by_lua_block {
            local case = cases[ngx.var.arg_case]
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ on_frame = case.hook and
                function(p, r, t, payload) return payload end or nil }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream?" .. ngx.var.args))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, name in ipairs(order) do
                local c = assert(ws.client("/proxy?case=" .. name))
                ngx.say(name, ": client got ", ws.describe(c:recv_frame()))
                c:send_close(1001)
                c:close()
            end
        }
    }
--- timeout: 15
--- response_body eval
CORE::join "", map { "$_: client got close:1001:\n" }
    qw(rsv opcode4 opcode15 longping fragping orphan msb close1 close1004
       close2999 close5000 closeutf8 badtext)
--- grep_error_log eval: qr/case \w+ upstream got: close:\d+:[^,]*/
--- grep_error_log_out
case rsv upstream got: close:1002:rsv bits set
case opcode4 upstream got: close:1002:reserved opcode
case opcode15 upstream got: close:1002:reserved opcode
case longping upstream got: close:1002:control frame too long
case fragping upstream got: close:1002:fragmented control frame
case orphan upstream got: close:1002:continuation without message
case msb upstream got: close:1002:64-bit payload length with the most significant bit set
case close1 upstream got: close:1002:close frame with a 1-byte payload
case close1004 upstream got: close:1002:invalid close status code
case close2999 upstream got: close:1002:invalid close status code
case close5000 upstream got: close:1002:invalid close status code
case closeutf8 upstream got: close:1007:close reason is not UTF-8
case badtext upstream got: close:1007:invalid UTF-8 text
--- no_error_log
[error]
