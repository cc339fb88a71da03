# vim:set ts=4 sts=4 sw=4 et ft=:

# Fragmented messages: forwarded as fragments, or aggregated into one frame
# with aggregate_fragments; control frames interleaved; limits.

use lib '.';
use t::WsRaw;

plan 'no_plan';

our $Hook = <<'_EOC_';
{ aggregate_fragments = true,
  on_frame = function(p, role, typ, payload, last, code)
      ngx.log(ngx.INFO, "hook: ", role, " ", typ, " ", #payload, " ", last)
      return payload
  end }
_EOC_

run_tests();

__DATA__

=== TEST 1: without aggregation, fragments go through as fragments
--- proxy_opts
{ on_frame = function(p, role, typ, payload, last)
      ngx.log(ngx.INFO, "hook: ", role, " ", typ, " ", payload, " ", last)
      return payload
  end }
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "a" }
            c:send_frame{ opcode = 0, fin = false, payload = "b" }
            c:send_frame{ opcode = 0, fin = true, payload = "c" }
            say_next() say_next() say_next()
--- response_body
text:a (fin=0)
continuation:b (fin=0)
continuation:c
--- grep_error_log eval: qr/hook: client \S+ \S+ \S+/
--- grep_error_log_out
hook: client text a false
hook: client continuation b false
hook: client continuation c true
--- no_error_log
[error]



=== TEST 2: aggregation, 2 fragments, text, with a hook
--- proxy_opts eval: $::Hook
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "hello " }
            c:send_frame{ opcode = 0, fin = true, payload = "world" }
            say_next()
--- response_body
text:hello world
--- error_log
upstream got: text:hello world (masked)
hook: client text 11 true
hook: upstream text 11 true
--- no_error_log
[error]



=== TEST 3: aggregation, 3 fragments, binary, no hook
--- proxy_opts
{ aggregate_fragments = true }
--- client
            c:send_frame{ opcode = 2, fin = false, payload = "\0\1" }
            c:send_frame{ opcode = 0, fin = false, payload = "\2\3" }
            c:send_frame{ opcode = 0, fin = true, payload = "\4" }
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", f.fin, " ", #f.payload, " ",
                    f.payload == "\0\1\2\3\4")
--- response_body
2 true 5 true
--- error_log
upstream got: binary:
--- no_error_log
[error]



=== TEST 4: aggregation, 100 fragments, with interleaved ping and pong
--- proxy_opts eval: $::Hook
--- client
            local parts = {}
            c:send_frame{ opcode = 1, fin = false, payload = "0" }
            parts[1] = "0"
            for i = 1, 98 do
                c:send_frame{ opcode = 0, fin = false, payload = tostring(i % 10) }
                parts[#parts + 1] = tostring(i % 10)
                if i == 50 then
                    c:send_frame{ opcode = 9, payload = "mid-ping" }
                end
                if i == 70 then
                    c:send_frame{ opcode = 0xa, payload = "mid-pong" }
                end
            end
            c:send_frame{ opcode = 0, fin = true, payload = "!" }
            parts[#parts + 1] = "!"
            say_next()
            local f = c:recv_frame()
            ngx.say(ws.describe(f), " ", f.payload == table.concat(parts))
--- upstream
                for i = 1, 3 do
                    local f = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                    if f.opcode == 1 then
                        s:send_frame{ opcode = 1, payload = f.payload }
                    elseif f.opcode == 9 then
                        s:send_frame{ opcode = 0xa, payload = f.payload }
                    end
                end
--- response_body
pong:mid-ping
text:100 bytes true
--- grep_error_log eval: qr/upstream got: \S+(?: \S+)? \(masked\)/
--- grep_error_log_out
upstream got: ping:mid-ping (masked)
upstream got: pong:mid-pong (masked)
upstream got: text:100 bytes (masked)
--- error_log
hook: client ping 8 true
hook: client pong 8 true
hook: client text 100 true
--- no_error_log
[error]



=== TEST 5: a close frame in the middle of a message is forwarded at once
--- proxy_opts eval: $::Hook
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "never" }
            c:send_close(1000, "stop")
            say_next()
--- response_body
close:1000:stop
--- error_log
upstream got: close:1000:stop
--- no_error_log
upstream got: text
[error]



=== TEST 6: a hook rewrites an assembled message
--- proxy_opts
{ aggregate_fragments = true,
  on_frame = function(p, role, typ, payload)
      if role == "client" and typ == "text" then
          return "<" .. payload .. ">"
      end
      return payload
  end }
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "ab" }
            c:send_frame{ opcode = 0, fin = false, payload = "cd" }
            c:send_frame{ opcode = 0, fin = true, payload = "ef" }
            say_next()
--- response_body
text:<abcdef>
--- no_error_log
[error]



=== TEST 7: consecutive messages and both directions assemble independently
--- proxy_opts eval: $::Hook
--- upstream
                s:send_frame{ opcode = 1, fin = false, payload = "up1-" }
                local f1 = s:recv_frame()
                s:send_frame{ opcode = 0, fin = true, payload = "end" }
                local f2 = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f1), " | ",
                        ws.describe(f2))
                s:recv_frame()
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "m1-" }
            c:send_frame{ opcode = 0, fin = true, payload = "end" }
            c:send_frame{ opcode = 2, fin = false, payload = "m2-" }
            c:send_frame{ opcode = 0, fin = true, payload = "end" }
            say_next()
            c:send_close(1000)
--- response_body
text:up1-end
--- error_log
upstream got: text:m1-end (masked) | binary:m2-end (masked)
--- no_error_log
[error]



=== TEST 8: upstream fragments are aggregated too
--- proxy_opts eval: $::Hook
--- upstream
                for i = 1, 3 do
                    s:send_frame{ opcode = i == 1 and 2 or 0, fin = i == 3,
                                  payload = string.rep(tostring(i), 1000) }
                end
                s:recv_frame()
--- client
            local f = c:recv_frame()
            ngx.say(ws.describe(f), " ", f.fin, " ",
                    f.payload == string.rep("1", 1000) .. string.rep("2", 1000)
                                 .. string.rep("3", 1000))
            c:send_close(1000)
--- response_body
binary:3000 bytes true true
--- error_log
hook: upstream binary 3000 true
--- no_error_log
[error]



=== TEST 9: a whole frame and a fragmented message in one write, aggregated
The fragments wait for the whole frame to be sent before they are checked:
checked twice, the first fragment would look like a new message inside the
open one.
--- proxy_opts
{ aggregate_fragments = true }
--- upstream
                local f1 = s:recv_frame()
                local f2 = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f1), " | ",
                        ws.describe(f2))
                s:recv_frame()
--- client
            c:send_raw(ws.build_frame{ opcode = 1, payload = "whole" }
                       .. ws.build_frame{ opcode = 1, fin = false,
                                          payload = "frag-" }
                       .. ws.build_frame{ opcode = 0, fin = false,
                                          payload = "ment-" }
                       .. ws.build_frame{ opcode = 0, payload = "ed" })
            ngx.sleep(0.1)
            c:send_close(1000)
            say_next()
--- response_body
close:1000:
--- error_log
upstream got: text:whole (masked) | text:frag-ment-ed (masked)
--- no_error_log
[error]
