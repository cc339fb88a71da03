# vim:set ts=4 sts=4 sw=4 et ft=:

# Text messages are valid UTF-8 in every mode (no hook, aggregation, hook),
# in both directions: the offender gets 1007, the other peer 1001, and
# never the invalid bytes.  Frames forwarded as they come are checked in
# place as they pass (client frames through their mask), so an invalid
# sequence closes as soon as it is seen, not when its frame is complete.

use lib '.';
use t::WsRaw;

plan 'no_plan';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("no_error_log", "[error]\n[alert]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: upstream text that is not UTF-8, no hook, no aggregation
--- upstream
            s:send_text("fine")
            s:send_text("bad \xff here")
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:fine
close:1001:
--- error_log
upstream protocol error: invalid UTF-8 in a text message, closing with 1007
upstream got: close:1007:invalid UTF-8 text



=== TEST 2: client text that is not UTF-8 (masked), no hook
--- client
            c:send_text("fine")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_text("\xe2\x82 cut")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:fine
close:1007:invalid UTF-8 text
--- error_log
upstream got: text:fine
upstream got: close:1001:
client protocol error: invalid UTF-8 in a text message



=== TEST 3: a code point cut by the end of an upstream message, no hook
--- upstream
            s:send_text("\xe2\x82")
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:
--- error_log
upstream got: close:1007:invalid UTF-8 text



=== TEST 4: a code point split between raw fragments is valid
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "\xe2" }
            s:send_frame{ opcode = 0, fin = true, payload = "\x82\xac" }
            s:send_close(1000, "")
--- client
            local a, b = c:recv_frame(), c:recv_frame()
            ngx.say(a.fin, " ", b.fin, " ",
                    a.payload .. b.payload == "\xe2\x82\xac")
--- response_body
false true true
--- error_log
execute: true nil



=== TEST 5: invalid UTF-8 in a raw continuation of a text message
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "ok" }
            ngx.say(ws.describe(c:recv_frame()))
            c:send_frame{ opcode = 0, fin = true, payload = "\xc0\xaf" }
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:ok (fin=0)
close:1007:invalid UTF-8 text
--- error_log
upstream got: text:ok (fin=0)
upstream got: close:1001:
--- no_error_log
[alert]



=== TEST 6: upstream text that is not UTF-8, aggregation on, one frame
--- proxy_opts
{ aggregate_fragments = true }
--- upstream
            s:send_text("\xed\xa0\x80")
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:
--- error_log
upstream got: close:1007:invalid UTF-8 text



=== TEST 7: fail fast: the first bytes of a frame in pieces are invalid
--- upstream
            -- a 1000-byte text frame: its header and 3 bytes, then a pause
            local frame = ws.build_frame{ opcode = 1, mask = false,
                                          payload = "\xff" .. string.rep("x", 999) }
            s:send_raw(frame:sub(1, 7))
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:
--- error_log
upstream got: close:1007:invalid UTF-8 text



=== TEST 8: fail fast with a hook (the frame is buffered)
--- proxy_opts
{ on_frame = function(_, role, typ, payload) return payload end }
--- upstream
            local frame = ws.build_frame{ opcode = 1, mask = false,
                                          payload = "\xff" .. string.rep("x", 999) }
            s:send_raw(frame:sub(1, 7))
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1001:
--- error_log
upstream got: close:1007:invalid UTF-8 text



=== TEST 9: invalid bytes after part of a raw frame was sent: the client is dropped
--- upstream
            local frame = ws.build_frame{ opcode = 1, mask = false,
                                          payload = string.rep("x", 500)
                                                    .. "\xff" .. string.rep("x", 499) }
            s:send_raw(frame:sub(1, 300))
            ngx.sleep(0.1)
            s:send_raw(frame:sub(301))
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            ngx.say(ws.describe(c:recv_frame()))
--- response_body_like chomp
^error:
--- error_log
upstream got: close:1007:invalid UTF-8 text
upstream protocol error: invalid UTF-8 in a text message



=== TEST 10: a masked client frame in pieces, invalid in its middle
--- client
            local frame = ws.build_frame{ opcode = 1, mask = true,
                                          payload = string.rep("a", 10)
                                                    .. "\xf8" .. string.rep("b", 10) }
            c:send_raw(frame:sub(1, 6 + 11))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1007:invalid UTF-8 text
--- error_log
upstream got: close:1001:



=== TEST 11: a ping with binary payload between text fragments is not text
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "a\xe2" }
            c:send_frame{ opcode = 9, payload = "\xff\xfe" }
            c:send_frame{ opcode = 0, fin = true, payload = "\x82\xac" }
            c:send_close(1000, "")
            local f
            repeat f = c:recv_frame() until not f or f.opcode == 8
            ngx.say(ws.describe(f))
--- response_body
close:1000:
--- error_log
upstream got: text:a
upstream got: ping:
upstream got: continuation:
execute: true nil



=== TEST 12: the same through a hook
--- proxy_opts
{ on_frame = function(_, role, typ, payload) return payload end }
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "a\xe2" }
            c:send_frame{ opcode = 9, payload = "\xff\xfe" }
            c:send_frame{ opcode = 0, fin = true, payload = "\x82\xac" }
            c:send_close(1000, "")
            local f
            repeat f = c:recv_frame() until not f or f.opcode == 8
            ngx.say(ws.describe(f))
--- response_body
close:1000:
--- error_log
upstream got: text:a
upstream got: ping:
upstream got: continuation:
execute: true nil
