# vim:set ts=4 sts=4 sw=4 et ft=:

# permessage-deflate, RFC 7692, rule by rule: RSV1 only on the first frame
# of a data message and only where it was negotiated, data that does not
# inflate, limits on the uncompressed size, the 101's answer to the
# client's offers and the checks of the upstream's answer.  What the raw
# peers compress is compressed in Perl (Z<<...>>, t/WsRaw.pm); the
# upstream recorder does not negotiate deflate, so the module inflates
# what the client compressed and the recorder logs it plain.

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: a compressed text message is inflated for an upstream without deflate
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            ngx.say(c.headers["sec-websocket-extensions"])
            c:send_frame{ opcode = 1, rsv = 4, payload = Z<<"Hello">> }
            local f = c:recv_frame()
            ngx.say(f.rsv, " z:", ws.hex(f.payload))
            c:send_close(1000)
            say_next()
--- response_body_filters eval
\&t::WsRaw::inflate_z_lines
--- response_body
permessage-deflate; server_no_context_takeover; client_no_context_takeover
4 inflated:Hello
close:1000:
--- error_log
upstream got: text:Hello
--- no_error_log
[error]



=== TEST 2: the examples of RFC 7692 7.2.3: one block, a stored block, a final block, two blocks, a fragmented message
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            -- 7.2.3.1
            c:send_frame{ opcode = 1, rsv = 4,
                          payload = "\xf2\x48\xcd\xc9\xc9\x07\x00" }
            -- 7.2.3.3: a block with no compression
            c:send_frame{ opcode = 1, rsv = 4, payload =
                "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00" }
            -- 7.2.3.4: a block with BFINAL set
            c:send_frame{ opcode = 1, rsv = 4,
                          payload = "\xf3\x48\xcd\xc9\xc9\x07\x00\x00" }
            -- 7.2.3.5: two blocks in one message
            c:send_frame{ opcode = 1, rsv = 4, payload =
                "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00" }
            -- 7.2.3.1's message in two frames, as 7.2.3.1 shows it
            c:send_frame{ opcode = 1, rsv = 4, fin = false,
                          payload = "\xf2\x48\xcd" }
            c:send_frame{ opcode = 0, payload = "\xc9\xc9\x07\x00" }
            for i = 1, 6 do
                local f = c:recv_frame()
                ngx.say(f.opcode, " ", f.rsv, " ", f.fin)
            end
            c:send_close(1000)
            say_next()
--- response_body
1 4 true
1 4 true
1 4 true
1 4 true
1 4 false
0 0 true
close:1000:
--- grep_error_log eval: qr/upstream got: \w+:[^,]*/
--- grep_error_log_out
upstream got: text:Hello (masked)
upstream got: text:Hello (masked)
upstream got: text:Hello (masked)
upstream got: text:Hello (masked)
upstream got: text:He (fin=0) (masked)
upstream got: continuation:llo (masked)
upstream got: close:1000:
--- no_error_log
[error]



=== TEST 3: client sets RSV1 on a ping
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 9, rsv = 4, payload = "" }
            say_next()
--- response_body
close:1002:rsv1 set on a control frame
--- error_log
client protocol error: rsv1 set on a control frame, closing with 1002
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 4: client sets RSV1 on a close
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 8, rsv = 4, payload = "\x03\xe8" }
            say_next()
--- response_body
close:1002:rsv1 set on a control frame
--- error_log
client protocol error: rsv1 set on a control frame, closing with 1002
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 5: client sets RSV1 on a continuation frame
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 1, rsv = 4, fin = false,
                          payload = "\xf2\x48\xcd" }
            c:send_frame{ opcode = 0, rsv = 4, payload = "\xc9\xc9\x07\x00" }
            -- the first frame's echo may come before the close
            local f = c:recv_frame()
            if f.opcode ~= 8 then
                f = c:recv_frame()
            end
            ngx.say(ws.describe(f))
--- response_body
close:1002:rsv1 set on a continuation frame
--- error_log
client protocol error: rsv1 set on a continuation frame, closing with 1002
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 6: client sets RSV1 without having offered deflate
--- proxy_opts
{ deflate = true }
--- client
            ngx.say(c.headers["sec-websocket-extensions"])
            c:send_frame{ opcode = 1, rsv = 4, payload = Z<<"Hello">> }
            say_next()
--- response_body
nil
close:1002:rsv bits set
--- error_log
client protocol error: rsv bits set, closing with 1002
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 7: client offered deflate, the module has it off: RSV1 is 1002
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            ngx.say(c.headers["sec-websocket-extensions"])
            c:send_frame{ opcode = 1, rsv = 4, payload = Z<<"Hello">> }
            say_next()
--- response_body
nil
close:1002:rsv bits set
--- error_log
client protocol error: rsv bits set, closing with 1002
--- no_error_log
[error]



=== TEST 8: client sets RSV2 or RSV3 with deflate negotiated
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 1, rsv = 6, payload = Z<<"Hello">> }
            say_next()
            local c2 = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate" } }))
            c2:send_frame{ opcode = 2, rsv = 1, payload = "x" }
            ngx.say(ws.describe(c2:recv_frame()))
--- response_body
close:1002:rsv bits set
close:1002:rsv bits set
--- error_log
client protocol error: rsv bits set, closing with 1002
--- no_error_log
[error]



=== TEST 9: upstream sets RSV1 without having accepted deflate
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- upstream
            s:send_frame{ opcode = 1, rsv = 4, payload = Z<<"Hello">> }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream protocol error: rsv bits set, closing with 1002
upstream got: close:1002:rsv bits set
--- no_error_log
[error]



=== TEST 10: upstream that accepted deflate sets RSV1 on a ping, then on a continuation
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ headers = {
                "Sec-WebSocket-Extensions: permessage-deflate; "
                .. "server_no_context_takeover; client_no_context_takeover" } }))
            if ngx.var.arg_cont then
                s:send_frame{ opcode = 1, rsv = 4, fin = false,
                              payload = "\xf2\x48\xcd" }
                s:send_frame{ opcode = 0, rsv = 4,
                              payload = "\xc9\xc9\x07\x00" }
            else
                s:send_frame{ opcode = 10, rsv = 4, payload = "" }
            end
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ deflate = true }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream" .. (ngx.var.is_args or "")
                              .. (ngx.var.args or "")))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            c = assert(ws.client("/proxy?cont=1"))
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.rsv, " ", f.fin)
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
close:1001:
1 0 false
close:1001:
--- error_log
upstream protocol error: rsv1 set on a control frame, closing with 1002
upstream got: close:1002:rsv1 set on a control frame
upstream protocol error: rsv1 set on a continuation frame, closing with 1002
upstream got: close:1002:rsv1 set on a continuation frame
--- no_error_log
[error]



=== TEST 11: a bad deflate stream from the client is 1007
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            -- BTYPE 11 is reserved (RFC 1951 3.2.3)
            c:send_frame{ opcode = 1, rsv = 4, payload = "\xff\xff\xff\xff" }
            say_next()
--- response_body_like eval
qr/^close:1007:.*\n\z/
--- error_log
client protocol error:
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 12: a bad deflate stream after good data, in the second frame of a message
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 2, rsv = 4, fin = false,
                          payload = "\xf2\x48\xcd" }
            c:send_frame{ opcode = 0, payload = "\xc9\x07\x06\xff\xff\xff" }
            repeat
                local f, err = c:recv_frame()
                ngx.say(ws.describe(f, err))
            until not f or f.opcode == 8
--- response_body_like eval
qr/close:1007:[^\n]*\n\z/
--- error_log
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 13: compressed text that inflates to invalid UTF-8 is 1007
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 1, rsv = 4,
                          payload = Z<<"valid, then \xc3\x28 not">> }
            say_next()
--- response_body_like eval
qr/^close:1007:.*\n\z/
--- error_log
upstream got: close:1001:
--- no_error_log
[error]
upstream got: text



=== TEST 14: compressed text whose UTF-8 sequence is cut between two frames inflates fine
--- proxy_opts
{ deflate = true, aggregate_fragments = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            local z = Z<<"caf\xc3\xa9 \xe2\x9c\x93">>
            c:send_frame{ opcode = 1, rsv = 4, fin = false,
                          payload = z:sub(1, 3) }
            c:send_frame{ opcode = 0, payload = z:sub(4) }
            local f = c:recv_frame()
            ngx.say(f.rsv, " z:", ws.hex(f.payload))
--- response_body_filters eval
\&t::WsRaw::inflate_z_lines
--- response_body
4 inflated:café ✓
--- error_log
upstream got: text:café ✓
--- no_error_log
[error]



=== TEST 15: the same bytes as binary are not checked
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 2, rsv = 4, payload = Z<<"\xc3\x28">> }
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.rsv, " z:", ws.hex(f.payload))
--- response_body_filters eval
\&t::WsRaw::inflate_z_lines
--- response_body eval
"2 4 inflated:\xc3\x28\n"
--- error_log
upstream got: binary:



=== TEST 16: an inflate bomb (100 KB that inflates to 100 MB) against client_max_frame_size: 1009, without inflating it
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            local f, err = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local function peak()
                local f = assert(io.open("/proc/self/status"))
                local kb = f:read("*a"):match("VmHWM:%s*(%d+)")
                f:close()
                return tonumber(kb)
            end
            local hwm0 = peak()
            local wp = assert(proxy.new({ deflate = true,
                                          client_max_frame_size = 1048576 }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            local hwm = peak()
            -- the bomb would take 100 MB (more under valgrind)
            ngx.log(ngx.INFO, "execute: ", ok, " ", err, ", peak grew by ",
                    "less than 32 MB: ", hwm - hwm0 < 32768, " (", hwm0,
                    " -> ", hwm, " kB)")
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local bomb = B<<pmd_deflate_repeat("\0" x 1048576, 100)>>
            ngx.update_time()
            local t0 = ngx.now()
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate" } }))
            c:send_frame{ opcode = 2, rsv = 4, payload = bomb }
            ngx.say(#bomb < 200000, " ", ws.describe(c:recv_frame()))
            ngx.update_time()
            ngx.say("quick: ", ngx.now() - t0 < 2 * ws.slow)
        }
    }
--- response_body
true close:1009:Payload Too Large
quick: true
--- error_log eval
[qr/client frame size \(104857\d\) exceeds limit, closing/,
 qr/upstream got: close:1001:/,
 qr/execute: .*less than 32 MB: true/]
--- no_error_log
[error]
upstream got: binary



=== TEST 17: an inflate bomb against ws_proxy_max_payload (no frame limit): 1009
--- http_config eval
$t::WsProxy::HttpConfig . "ws_proxy_max_payload 1m;"
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            local f, err = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local function peak()
                local f = assert(io.open("/proc/self/status"))
                local kb = f:read("*a"):match("VmHWM:%s*(%d+)")
                f:close()
                return tonumber(kb)
            end
            local hwm0 = peak()
            local wp = assert(proxy.new({ deflate = true }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            local hwm = peak()
            -- the bomb would take 100 MB (more under valgrind)
            ngx.log(ngx.INFO, "execute: ", ok, " ", err, ", peak grew by ",
                    "less than 32 MB: ", hwm - hwm0 < 32768, " (", hwm0,
                    " -> ", hwm, " kB)")
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local bomb = B<<pmd_deflate_repeat("\0" x 1048576, 100)>>
            local c = assert(ws.client("/proxy", { headers = {
                "Sec-WebSocket-Extensions: permessage-deflate" } }))
            c:send_frame{ opcode = 1, rsv = 4, payload = bomb }
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
close:1009:Payload Too Large
--- error_log eval
[qr/client message of \d+ bytes exceeds the buffering limit of 1048576/,
 qr/upstream got: close:1001:/,
 qr/execute: .*less than 32 MB: true/]
--- no_error_log
[error]



=== TEST 18: limits count uncompressed bytes: 1000 bytes pass a limit of 1000, 1001 do not, however small compressed
--- proxy_opts
{ deflate = true, client_max_frame_size = 1000 }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            local z1000, z1001 = Z<<"a" x 1000>>, Z<<"a" x 1001>>
            ngx.say(#z1000 < 20, " ", #z1001 < 20)
            c:send_frame{ opcode = 1, rsv = 4, payload = z1000 }
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.rsv)
            c:send_frame{ opcode = 1, rsv = 4, payload = z1001 }
            say_next()
--- response_body
true true
1 4
close:1009:Payload Too Large
--- error_log
upstream got: text:1000 bytes
client frame size (1001) exceeds limit, closing
--- no_error_log
[error]



=== TEST 19: aggregated fragments count the whole message, uncompressed
--- proxy_opts
{ deflate = true, aggregate_fragments = true, client_max_frame_size = 1500 }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            local z = Z<<"b" x 2000>>
            c:send_frame{ opcode = 1, rsv = 4, fin = false,
                          payload = z:sub(1, 4) }
            c:send_frame{ opcode = 0, payload = z:sub(5) }
            say_next()
--- response_body
close:1009:Payload Too Large
--- error_log
client frame size (1501) exceeds limit, closing
--- no_error_log
[error]
upstream got: text



=== TEST 20: the 101 answers the client's offers
--- config
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ deflate = true }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local offers = {
                { "permessage-deflate" },
                { "permessage-deflate; client_max_window_bits" },
                { "permessage-deflate; server_max_window_bits=10" },
                { "permessage-deflate; client_max_window_bits=9; "
                  .. "server_max_window_bits=8" },
                { "permessage-deflate; server_no_context_takeover" },
                { 'permessage-deflate; server_max_window_bits="12"' },
                { "PerMessage-Deflate ; Client_Max_Window_Bits = 11" },
                -- other extensions come first, on one line or several
                { "x-webkit-deflate-frame, permessage-deflate; "
                  .. "client_max_window_bits=12" },
                { "foo; bar=1", "permessage-deflate; server_max_window_bits=11" },
                -- an offer the module declines, then one it takes
                { "permessage-deflate; foo=1, permessage-deflate; "
                  .. "client_max_window_bits=13" },
                { "permessage-deflate; server_max_window_bits=7",
                  "permessage-deflate; server_max_window_bits=14" },
                -- offers the module declines: no extension
                { "permessage-deflate; unknown" },
                { "permessage-deflate; server_max_window_bits=7" },
                { "permessage-deflate; server_max_window_bits=16" },
                { "permessage-deflate; server_max_window_bits" },
                { "permessage-deflate; client_max_window_bits=0" },
                { "permessage-deflate; client_max_window_bits=abc" },
                { "permessage-deflate; server_max_window_bits=010" },
                { "permessage-deflate; client_no_context_takeover=1" },
                { "permessage-deflate; server_no_context_takeover; "
                  .. "server_no_context_takeover" },
                { "permessage-deflate; client_max_window_bits=10; "
                  .. "client_max_window_bits=11" },
                { "x-webkit-deflate-frame" },
            }
            for _, o in ipairs(offers) do
                local h = {}
                for i, v in ipairs(o) do
                    h[i] = "Sec-WebSocket-Extensions: " .. v
                end
                local c = assert(ws.client("/proxy", { headers = h }))
                ngx.say(table.concat(o, " | "), " => ",
                        c.headers["sec-websocket-extensions"])
                c:send_close(1000)
                c:close()
            end
        }
    }
--- response_body
permessage-deflate => permessage-deflate; server_no_context_takeover; client_no_context_takeover
permessage-deflate; client_max_window_bits => permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15
permessage-deflate; server_max_window_bits=10 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10
permessage-deflate; client_max_window_bits=9; server_max_window_bits=8 => nil
permessage-deflate; server_no_context_takeover => permessage-deflate; server_no_context_takeover; client_no_context_takeover
permessage-deflate; server_max_window_bits="12" => permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12
PerMessage-Deflate ; Client_Max_Window_Bits = 11 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=11
x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=12
foo; bar=1 | permessage-deflate; server_max_window_bits=11 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11
permessage-deflate; foo=1, permessage-deflate; client_max_window_bits=13 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=13
permessage-deflate; server_max_window_bits=7 | permessage-deflate; server_max_window_bits=14 => permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=14
permessage-deflate; unknown => nil
permessage-deflate; server_max_window_bits=7 => nil
permessage-deflate; server_max_window_bits=16 => nil
permessage-deflate; server_max_window_bits => nil
permessage-deflate; client_max_window_bits=0 => nil
permessage-deflate; client_max_window_bits=abc => nil
permessage-deflate; server_max_window_bits=010 => nil
permessage-deflate; client_no_context_takeover=1 => nil
permessage-deflate; server_no_context_takeover; server_no_context_takeover => nil
permessage-deflate; client_max_window_bits=10; client_max_window_bits=11 => nil
x-webkit-deflate-frame => nil
--- error_log
no permessage-deflate offer of the client accepted
--- no_error_log
[error]



=== TEST 21: the 101 with context takeover on and window bits 10
--- config
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ deflate = true,
                                          deflate_context_takeover = true,
                                          deflate_window_bits = 10 }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, v in ipairs{
                "permessage-deflate",
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=12; "
                .. "client_max_window_bits=9",
                "permessage-deflate; server_no_context_takeover; "
                .. "client_no_context_takeover",
            } do
                local c = assert(ws.client("/proxy", { headers = {
                    "Sec-WebSocket-Extensions: " .. v } }))
                ngx.say(v, " => ", c.headers["sec-websocket-extensions"])
                c:send_close(1000)
                c:close()
            end
        }
    }
--- response_body_like eval
qr{\Apermessage-deflate => (?:permessage-deflate(?:; server_max_window_bits=10)?|nil)
permessage-deflate; client_max_window_bits => permessage-deflate(?:; server_max_window_bits=10)?; client_max_window_bits=10
permessage-deflate; server_max_window_bits=12; client_max_window_bits=9 => permessage-deflate; server_max_window_bits=10; client_max_window_bits=9
permessage-deflate; server_no_context_takeover; client_no_context_takeover => permessage-deflate; server_no_context_takeover; client_no_context_takeover(?:; server_max_window_bits=10)?
\z}
--- no_error_log
[error]



=== TEST 22: the upstream's answer is checked against the module's offer
--- config
    location /up {
        content_by_lua_block {
            local ws = require "wstest"
            local h = {}
            if ngx.var.arg_ext ~= "" then
                h[1] = "Sec-WebSocket-Extensions: "
                       .. ngx.unescape_uri(ngx.var.arg_ext)
            end
            ngx.log(ngx.INFO, "offered: ",
                    ngx.var.http_sec_websocket_extensions)
            local s = assert(ws.server({ headers = h }))
            s:recv_frame()
        }
    }

    # one connect_upstream() per request: d, wb, ct the options, ext the
    # upstream's answer
    location /c {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local a = ngx.var
            local wp = assert(proxy.new({
                deflate = a.arg_d == "1" or nil,
                deflate_window_bits = tonumber(a.arg_wb),
                deflate_context_takeover = a.arg_ct == "1" or nil }))
            local ok, err = wp:connect_upstream("ws://127.0.0.1:"
                .. ngx.var.server_port .. "/up?ext=" .. (a.arg_ext or ""))
            ngx.print(ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local function get(args, ext)
                local s = ngx.socket.tcp()
                assert(s:connect("127.0.0.1", ngx.var.server_port))
                s:send("GET /c?" .. args .. "&ext="
                       .. ngx.escape_uri(ext or "")
                       .. " HTTP/1.0\r\nHost: x\r\n\r\n")
                local all = s:receive("*a")
                s:close()
                return all:match("\r\n\r\n(.*)$")
            end
            local snct = "permessage-deflate; server_no_context_takeover"
            for _, c in ipairs{
                -- deflate off: nothing was offered
                { "d=0", "permessage-deflate" },
                -- deflate on offers permessage-deflate;
                -- client_max_window_bits; server_no_context_takeover;
                -- client_no_context_takeover
                { "d=1", "x-foo" },
                { "d=1", "permessage-deflate, permessage-deflate" },
                { "d=1", "permessage-deflate, x-foo" },
                { "d=1", "permessage-deflate" },
                { "d=1", snct .. "; foo" },
                { "d=1", snct .. "; server_max_window_bits=16" },
                { "d=1", snct .. "; server_max_window_bits=7" },
                { "d=1", snct .. "; server_max_window_bits" },
                { "d=1", snct .. "; client_max_window_bits" },
                { "d=1", snct .. "; client_max_window_bits=16" },
                { "d=1", snct .. "; server_no_context_takeover" },
                { "d=1", snct .. "; client_no_context_takeover=1" },
                -- window bits 10: offered server_max_window_bits=10 and
                -- client_max_window_bits=10
                { "d=1&wb=10", snct .. "; server_max_window_bits=12" },
                { "d=1&wb=10", snct .. "; server_max_window_bits=10; "
                               .. "client_max_window_bits=11" },
                { "d=1&wb=10", snct },
                -- context takeover on: no client_max_window_bits value
                -- offered, no *_no_context_takeover asked
                { "d=1&ct=1", "permessage-deflate; client_max_window_bits=8" },
                -- answers that are fine
                { "d=1", snct },
                { "d=1", snct .. "; client_no_context_takeover; "
                         .. "server_max_window_bits=9; "
                         .. "client_max_window_bits=12" },
                { "d=1&wb=10", snct .. "; server_max_window_bits=8; "
                               .. "client_max_window_bits=9" },
                { "d=1&ct=1", "permessage-deflate" },
                { "d=1&ct=1", "permessage-deflate; server_no_context_takeover; "
                              .. "client_no_context_takeover" },
                { "d=1", nil },
            } do
                ngx.say(c[1], " ", c[2], " => ", get(c[1], c[2]))
            end
        }
    }
--- response_body
d=0 permessage-deflate => nil upstream negotiated an extension that was not offered: permessage-deflate
d=1 x-foo => nil upstream's permessage-deflate answer: an extension that was not offered: x-foo
d=1 permessage-deflate, permessage-deflate => nil upstream's permessage-deflate answer: more than one extension: permessage-deflate, permessage-deflate
d=1 permessage-deflate, x-foo => nil upstream's permessage-deflate answer: more than one extension: permessage-deflate, x-foo
d=1 permessage-deflate => nil upstream's permessage-deflate answer: no server_no_context_takeover, which was asked for: permessage-deflate
d=1 permessage-deflate; server_no_context_takeover; foo => nil upstream's permessage-deflate answer: an unknown parameter: permessage-deflate; server_no_context_takeover; foo
d=1 permessage-deflate; server_no_context_takeover; server_max_window_bits=16 => nil upstream's permessage-deflate answer: a *_max_window_bits value other than 8..15: permessage-deflate; server_no_context_takeover; server_max_window_bits=16
d=1 permessage-deflate; server_no_context_takeover; server_max_window_bits=7 => nil upstream's permessage-deflate answer: a *_max_window_bits value other than 8..15: permessage-deflate; server_no_context_takeover; server_max_window_bits=7
d=1 permessage-deflate; server_no_context_takeover; server_max_window_bits => nil upstream's permessage-deflate answer: server_max_window_bits without a value: permessage-deflate; server_no_context_takeover; server_max_window_bits
d=1 permessage-deflate; server_no_context_takeover; client_max_window_bits => nil upstream's permessage-deflate answer: client_max_window_bits without a value: permessage-deflate; server_no_context_takeover; client_max_window_bits
d=1 permessage-deflate; server_no_context_takeover; client_max_window_bits=16 => nil upstream's permessage-deflate answer: a *_max_window_bits value other than 8..15: permessage-deflate; server_no_context_takeover; client_max_window_bits=16
d=1 permessage-deflate; server_no_context_takeover; server_no_context_takeover => nil upstream's permessage-deflate answer: a repeated parameter: permessage-deflate; server_no_context_takeover; server_no_context_takeover
d=1 permessage-deflate; server_no_context_takeover; client_no_context_takeover=1 => nil upstream's permessage-deflate answer: a *_no_context_takeover with a value: permessage-deflate; server_no_context_takeover; client_no_context_takeover=1
d=1&wb=10 permessage-deflate; server_no_context_takeover; server_max_window_bits=12 => nil upstream's permessage-deflate answer: a server_max_window_bits larger than offered: permessage-deflate; server_no_context_takeover; server_max_window_bits=12
d=1&wb=10 permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11 => nil upstream's permessage-deflate answer: a client_max_window_bits larger than offered: permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11
d=1&wb=10 permessage-deflate; server_no_context_takeover => nil upstream's permessage-deflate answer: no server_max_window_bits, which was asked for: permessage-deflate; server_no_context_takeover
d=1&ct=1 permessage-deflate; client_max_window_bits=8 => nil upstream's permessage-deflate answer: a client_max_window_bits of 8, which zlib cannot deflate with: permessage-deflate; client_max_window_bits=8
d=1 permessage-deflate; server_no_context_takeover => true nil
d=1 permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12 => true nil
d=1&wb=10 permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits=9 => true nil
d=1&ct=1 permessage-deflate => true nil
d=1&ct=1 permessage-deflate; server_no_context_takeover; client_no_context_takeover => true nil
d=1 nil => true nil
--- no_error_log
[error]



=== TEST 23: RFC 7692 7.2.3.2: with context takeover the second "Hello" refers to the first
--- proxy_opts
{ deflate = true, deflate_context_takeover = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            ngx.say(c.headers["sec-websocket-extensions"])
            c:send_frame{ opcode = 1, rsv = 4,
                          payload = "\xf2\x48\xcd\xc9\xc9\x07\x00" }
            c:send_frame{ opcode = 1, rsv = 4, payload = "\xf2\x00\x11\x00\x00" }
            c:recv_frame()
            c:recv_frame()
            c:send_close(1000)
            say_next()
--- response_body
permessage-deflate
close:1000:
--- grep_error_log eval: qr/upstream got: \w+:[^,]*/
--- grep_error_log_out
upstream got: text:Hello (masked)
upstream got: text:Hello (masked)
upstream got: close:1000:
--- no_error_log
[error]



=== TEST 24: without context takeover (asked of the client) the same second message does not inflate: 1007
--- proxy_opts
{ deflate = true }
--- client_opts
{ headers = { "Sec-WebSocket-Extensions: permessage-deflate" } }
--- client
            c:send_frame{ opcode = 1, rsv = 4,
                          payload = "\xf2\x48\xcd\xc9\xc9\x07\x00" }
            c:recv_frame()
            c:send_frame{ opcode = 1, rsv = 4, payload = "\xf2\x00\x11\x00\x00" }
            say_next()
--- response_body_like eval
qr/^close:1007:.*\n\z/
--- grep_error_log eval: qr/upstream got: \w+:[^,]*/
--- grep_error_log_out
upstream got: text:Hello (masked)
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 25: a bad deflate stream from an upstream that accepted deflate is 1007 to it, 1001 to the client
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server({ headers = {
                "Sec-WebSocket-Extensions: permessage-deflate; "
                .. "server_no_context_takeover; client_no_context_takeover" } }))
            s:send_frame{ opcode = 1, rsv = 4, payload = "\xff\xff\xff\xff" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ deflate = true }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
close:1001:
--- error_log eval
qr/upstream got: close:1007:/
--- no_error_log
[error]



=== TEST 26: deflate = "upstream": the client's offer is not answered, the upstream is offered deflate
--- config
    location /up {
        content_by_lua_block {
            ngx.log(ngx.INFO, "offered: ",
                    ngx.var.http_sec_websocket_extensions)
            local ws = require "wstest"
            local s = assert(ws.server())
            s:recv_frame()
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new({ deflate = ngx.var.arg_d }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/up"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, d in ipairs{ "upstream", "client" } do
                local c = assert(ws.client("/proxy?d=" .. d, { headers = {
                    "Sec-WebSocket-Extensions: permessage-deflate" } }))
                ngx.say(d, ": ", c.headers["sec-websocket-extensions"])
                c:send_close(1000)
                c:close()
            end
        }
    }
--- response_body
upstream: nil
client: permessage-deflate; server_no_context_takeover; client_no_context_takeover
--- grep_error_log eval: qr/offered: [^,]*/
--- grep_error_log_out
offered: permessage-deflate; client_max_window_bits; server_no_context_takeover; client_no_context_takeover
offered: nil
--- no_error_log
[error]



=== TEST 27: a second proxy object in the same request offers its own deflate options, not the first one's
--- config
    location /up {
        content_by_lua_block {
            ngx.log(ngx.INFO, "offered: ",
                    ngx.var.http_sec_websocket_extensions)
            local ws = require "wstest"
            local s = assert(ws.server({ headers = {
                "Sec-WebSocket-Extensions: x-foo" } }))
            s:recv_frame()
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local up = "ws://127.0.0.1:" .. ngx.var.server_port .. "/up"
            for _, opts in ipairs{
                { deflate = true, deflate_window_bits = 10,
                  deflate_context_takeover = true },
                { deflate = true },
                {},
            } do
                local wp = assert(proxy.new(opts))
                ngx.say(wp:connect_upstream(up))
            end
        }
    }
--- response_body
nilupstream's permessage-deflate answer: an extension that was not offered: x-foo
nilupstream's permessage-deflate answer: an extension that was not offered: x-foo
nilupstream negotiated an extension that was not offered: x-foo
--- grep_error_log eval: qr/offered: [^,]*/
--- grep_error_log_out
offered: permessage-deflate; client_max_window_bits=10; server_max_window_bits=10
offered: permessage-deflate; client_max_window_bits; server_no_context_takeover; client_no_context_takeover
offered: nil
--- no_error_log
[error]



=== TEST 28: new()'s deflate options are checked where they are given
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local cases = {
                { deflate = "both" },
                { deflate = 1 },
                { deflate_context_takeover = "yes" },
                { client_deflate_context_takeover = 1 },
                { upstream_deflate_context_takeover = "on" },
                { deflate_window_bits = 7 },
                { deflate_window_bits = 16 },
                { deflate_window_bits = 9.5 },
                { client_deflate_window_bits = "12" },
                { upstream_deflate_window_bits = 0 },
                { deflate_level = 10 },
                { deflate_level = -1 },
                { deflate_mem_level = 0 },
                { deflate_mem_level = 10 },
            }
            for _, opts in ipairs(cases) do
                local ok, err = pcall(proxy.new, opts)
                ngx.say(ok, " ", err)
            end
            for _, opts in ipairs({
                { deflate = true }, { deflate = false },
                { deflate = "client" }, { deflate = "upstream" },
                { client_deflate_window_bits = 8, deflate_level = 0,
                  deflate_mem_level = 9, deflate_context_takeover = true },
            }) do
                ngx.say(type(proxy.new(opts)))
            end
        }
    }
--- response_body
false opts.deflate must be a boolean, "client" or "upstream"
false opts.deflate must be a boolean, "client" or "upstream"
false opts.deflate_context_takeover must be a boolean
false opts.client_deflate_context_takeover must be a boolean
false opts.upstream_deflate_context_takeover must be a boolean
false opts.deflate_window_bits must be an integer from 8 to 15
false opts.deflate_window_bits must be an integer from 8 to 15
false opts.deflate_window_bits must be an integer from 8 to 15
false opts.client_deflate_window_bits must be an integer from 8 to 15
false opts.upstream_deflate_window_bits must be an integer from 8 to 15
false opts.deflate_level must be an integer from 0 to 9
false opts.deflate_level must be an integer from 0 to 9
false opts.deflate_mem_level must be an integer from 1 to 9
false opts.deflate_mem_level must be an integer from 1 to 9
table
table
table
table
table
--- no_error_log
[error]



=== TEST 29: a window outside 8..15 is refused at configuration time
--- config
    ws_proxy_client_deflate_window_bits 16;
    location /t {
        return 200;
    }
--- must_die
--- allowed_levels
[emerg]
--- error_log
value must be between 8 and 15



=== TEST 30: so is a level outside 0..9
--- config
    ws_proxy_deflate_level 10;
    location /t {
        return 200;
    }
--- must_die
--- allowed_levels
[emerg]
--- error_log
value must be between 0 and 9



=== TEST 31: ws_proxy_deflate takes off, on, client or upstream
--- config
    ws_proxy_deflate both;
    location /t {
        return 200;
    }
--- must_die
--- allowed_levels
[emerg]
--- error_log
invalid value "both"
