# vim:set ts=4 sts=4 sw=4 et ft=:

# RFC 6455 sections 5 to 8: every violation, from either side, closes the
# offender with the RFC's status and the other peer with 1001, after the
# frames accepted before it, and logs one [info] line.

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: client sets RSV1 without an extension
--- client
            c:send_text("before")
            say_next()
            c:send_frame{ opcode = 1, rsv = 4, payload = "x" }
            say_next()
--- response_body
text:before
close:1002:rsv bits set
--- error_log
client protocol error: rsv bits set, closing with 1002
upstream got: close:1001:
execute: nil client protocol error: rsv bits set
--- no_error_log
[error]



=== TEST 2: upstream sets RSV3
--- upstream
            s:send_frame{ opcode = 1, payload = "fine" }
            s:send_frame{ opcode = 1, rsv = 1, payload = "x" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
            say_next()
--- response_body
text:fine
close:1001:
--- error_log
upstream protocol error: rsv bits set, closing with 1002
upstream got: close:1002:rsv bits set
--- no_error_log
[error]



=== TEST 3: client sends reserved opcodes 3 and 0xB
--- client
            c:send_frame{ opcode = 3, payload = "x" }
            say_next()
--- response_body
close:1002:reserved opcode
--- error_log
client protocol error: reserved opcode
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 4: upstream sends reserved control opcode 0xB
--- upstream
            s:send_frame{ opcode = 0xb, payload = "x" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream protocol error: reserved opcode
upstream got: close:1002:reserved opcode
--- no_error_log
[error]



=== TEST 5: client frame that is not masked
--- client
            c:send_frame{ opcode = 1, payload = "plain", mask = false }
            say_next()
--- response_body
close:1002:unmasked client frame
--- error_log
client protocol error: unmasked client frame
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 6: upstream frame that is masked
--- upstream
            s:send_frame{ opcode = 1, payload = "masked", mask = true }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream protocol error: masked upstream frame
upstream got: close:1002:masked upstream frame
--- no_error_log
[error]



=== TEST 7: client control frame with 126 bytes of payload
--- client
            c:send_frame{ opcode = 9, payload = string.rep("p", 126) }
            say_next()
--- response_body
close:1002:control frame too long
--- error_log
client protocol error: control frame too long
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 8: upstream fragmented control frame
--- upstream
            s:send_frame{ opcode = 9, fin = false, payload = "p" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream protocol error: fragmented control frame
upstream got: close:1002:fragmented control frame
--- no_error_log
[error]



=== TEST 9: client continuation with no message started
--- client
            c:send_frame{ opcode = 0, payload = "orphan" }
            say_next()
--- response_body
close:1002:continuation without message
--- error_log
client protocol error: continuation without message
--- no_error_log
[error]



=== TEST 10: upstream starts a new message inside a fragmented one
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "part1" }
            s:send_frame{ opcode = 1, payload = "new" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
            say_next()
--- response_body
text:part1 (fin=0)
close:1001:
--- error_log
upstream protocol error: new message inside fragmented message
upstream got: close:1002:new message inside fragmented message
--- no_error_log
[error]



=== TEST 11: client 64-bit length with the most significant bit set
--- client
            c:send_frame{ opcode = 2, payload = "", len = 1, len_bytes = 8,
                          len_msb = true }
            say_next()
--- response_body_like eval
qr/^close:1002:64-bit .*\n\z/
--- error_log
client protocol error: 64-bit
--- no_error_log
[error]



=== TEST 12: close frame with a 1-byte payload
--- client
            c:send_frame{ opcode = 8, payload = "x" }
            say_next()
--- response_body_like eval
qr/^close:1002:.*1-byte.*\n\z/
--- error_log
client protocol error:
--- no_error_log
[error]



=== TEST 13: close codes that may not be sent are refused, others forwarded
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, code in ipairs({ 999, 1004, 1005, 1006, 1015, 1016, 2999,
                                    5000, 1000, 1003, 1007, 1014, 3000,
                                    4999 }) do
                local c = assert(ws.client("/proxy"))
                c:send_close(code, "r")
                local f = c:recv_frame()
                ngx.say(code, " -> ", ws.describe(f))
                c:close()
            end
        }
    }
--- response_body
999 -> close:1002:invalid close status code
1004 -> close:1002:invalid close status code
1005 -> close:1002:invalid close status code
1006 -> close:1002:invalid close status code
1015 -> close:1002:invalid close status code
1016 -> close:1002:invalid close status code
2999 -> close:1002:invalid close status code
5000 -> close:1002:invalid close status code
1000 -> close:1000:r
1003 -> close:1003:r
1007 -> close:1007:r
1014 -> close:1014:r
3000 -> close:3000:r
4999 -> close:4999:r
--- timeout: 10
--- no_error_log
[error]



=== TEST 14: a close reason that is not UTF-8 gets 1007
--- upstream
            s:send_close(1000, "\xff\xfe")
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream protocol error: close reason is not UTF-8
upstream got: close:1007:
--- no_error_log
[error]



=== TEST 15: text that is not UTF-8, seen by a hook, gets 1007
--- proxy_opts
{ on_frame = function(p, role, typ, payload) return payload end }
--- client
            c:send_text("ok")
            say_next()
            c:send_text("bad \xc3\x28 text")
            say_next()
--- response_body
text:ok
close:1007:invalid UTF-8 text
--- error_log
client protocol error: invalid UTF-8 in a text message, closing with 1007
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 16: a code point split between fragments is valid UTF-8
--- proxy_opts
{ aggregate_fragments = true,
  on_frame = function(p, role, typ, payload) return payload end }
--- client
            -- U+20AC (e2 82 ac) split after its first byte
            c:send_frame{ opcode = 1, fin = false, payload = "euro \xe2" }
            c:send_frame{ opcode = 0, fin = true, payload = "\x82\xac!" }
            local f = c:recv_frame()
            ngx.say(ws.describe(f), " ", f.payload == "euro \xe2\x82\xac!")
            c:send_frame{ opcode = 1, fin = false, payload = "bad \xe2" }
            c:send_frame{ opcode = 0, fin = true, payload = "\x28" }
            say_next()
--- response_body
text:euro €! true
close:1007:invalid UTF-8 text
--- no_error_log
[error]



=== TEST 17: data after a close frame is ignored
--- client
            c:send_raw(ws.build_frame{ opcode = 8,
                                       payload = ws.close_payload(1000, "bye") }
                       .. ws.build_frame{ opcode = 1, payload = "late" })
            say_next()
--- response_body
close:1000:bye
--- error_log
upstream got: close:1000:bye
--- no_error_log
upstream got: text:late
[error]



=== TEST 18: a close handshake the other side never completes times out
--- proxy_opts
{ close_timeout = 300 }
--- upstream
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
            ngx.sleep(2)
--- client
            c:send_close(1000, "bye")
            local f, err = c:recv_frame()
            ngx.say(ws.describe(f, err))
--- response_body
error: closed
--- error_log
upstream got: close:1000:bye
close handshake timed out
--- no_error_log
[error]



=== TEST 19: frames accepted before a violation are all delivered
--- client
            c:send_raw(ws.build_frame{ opcode = 1, payload = "a" }
                       .. ws.build_frame{ opcode = 1, payload = "b" }
                       .. ws.build_frame{ opcode = 1, payload = "c",
                                          mask = false })
            -- the echoes of a and b may come after the proxy's close
            local f
            repeat
                f = c:recv_frame()
            until not f or f.opcode == 8
            ngx.say(ws.describe(f))
--- response_body
close:1002:unmasked client frame
--- grep_error_log eval: qr/upstream got: [^,]*/
--- grep_error_log_out
upstream got: text:a (masked)
upstream got: text:b (masked)
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 20: the upstream vanishes mid-frame: the client connection is dropped
--- upstream
            s:send_raw(ws.build_frame{ opcode = 2, mask = false,
                                       payload = string.rep("x", 1000) }
                       :sub(1, 500))
            ngx.sleep(0.1)
--- client
            local f, err = c:recv_frame()
            ngx.say(ws.describe(f, err))
--- response_body
error: closed
--- error_log
upstream closed the connection without a close frame
execute: nil upstream closed the connection in the middle of a frame



=== TEST 21: the upstream vanishes between frames: the client gets 1001
--- upstream
            s:send_frame{ opcode = 1, payload = "last words" }
--- client
            say_next()
            say_next()
--- response_body
text:last words
close:1001:
--- error_log
execute: true nil
--- no_error_log
[error]



=== TEST 22: the client vanishes: the upstream gets 1001
--- client
            c:send_text("hello")
            say_next()
            c:close()
            ngx.sleep(0.2)
--- response_body
text:hello
--- error_log
client closed the connection without a close frame
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 22b: the upstream vanishes in the middle of a frame header: 1001
Nothing of a frame whose header is not whole has been forwarded, so the
client can still get a clean close; a whole frame read with the same bytes
goes first.
--- upstream
            s:send_raw(ws.build_frame{ opcode = 1, mask = false,
                                       payload = "last words" }
                       .. string.char(0x82, 0x7e, 0x01))
--- client
            say_next()
            say_next()
--- response_body
text:last words
close:1001:
--- error_log
upstream closed the connection without a close frame
execute: true nil
--- no_error_log
[error]



=== TEST 22c: the client vanishes in the middle of a frame header: 1001
--- client
            c:send_raw(ws.build_frame{ opcode = 1, payload = "hello" }
                       .. string.char(0x81, 0x85, 0x01))
            say_next()
            c:close()
            ngx.sleep(0.2)
--- response_body
text:hello
--- error_log
client closed the connection without a close frame
upstream got: close:1001:
--- no_error_log
[error]
