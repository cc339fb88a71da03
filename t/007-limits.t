# vim:set ts=4 sts=4 sw=4 et ft=:

# Frame size and fragment limits, as Kong's library applies them: the
# offending peer gets 1009 "Payload Too Large", the other one 1001, and
# execute() returns true.  Control frames are not counted.

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: client_max_frame_size on a single frame
--- proxy_opts
{ client_max_frame_size = 10 }
--- client
            c:send_text("short")
            say_next()
            c:send_text("this is way too long")
            say_next()
--- response_body
text:short
close:1009:Payload Too Large
--- error_log
client frame size (20) exceeds limit, closing
upstream got: close:1001:
execute: true nil
--- no_error_log
[error]



=== TEST 2: upstream_max_frame_size on a single frame
--- proxy_opts
{ upstream_max_frame_size = 10 }
--- upstream
            s:send_frame{ opcode = 1, payload = "this is way too long" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream frame size (20) exceeds limit, closing
upstream got: close:1009:Payload Too Large
--- no_error_log
[error]



=== TEST 3: client_max_frame_size on an aggregated message, pings between
--- proxy_opts
{ client_max_frame_size = 10, aggregate_fragments = true }
--- client
            for i = 1, 5 do
                c:send_frame{ opcode = i == 1 and 1 or 0, fin = false,
                              payload = "11" }
                c:send_frame{ opcode = 9, payload = tostring(i) }
                say_next()
            end
            c:send_frame{ opcode = 0, fin = true, payload = "1" }
            say_next()
--- response_body
pong:1
pong:2
pong:3
pong:4
pong:5
close:1009:Payload Too Large
--- upstream
                while true do
                    local f = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                    if not f or f.opcode == 8 then break end
                    if f.opcode == 9 then
                        s:send_frame{ opcode = 0xa, payload = f.payload }
                    end
                end
--- error_log
client frame size (11) exceeds limit, closing
upstream got: close:1001:
--- no_error_log
upstream got: text
[error]



=== TEST 4: upstream_max_frame_size on an aggregated message
--- proxy_opts
{ upstream_max_frame_size = 10, aggregate_fragments = true }
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "123456" }
            s:send_frame{ opcode = 0, fin = true, payload = "7890a" }
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
--- response_body
close:1001:
--- error_log
upstream frame size (11) exceeds limit, closing
upstream got: close:1009:Payload Too Large
--- no_error_log
[error]



=== TEST 5: client_max_fragments
--- proxy_opts
{ client_max_fragments = 3, aggregate_fragments = true }
--- client
            for i = 1, 4 do
                c:send_frame{ opcode = i == 1 and 1 or 0, fin = false,
                              payload = "f" }
            end
            say_next()
--- response_body
close:1009:Payload Too Large
--- error_log
client frame count (4) exceeds limit, closing
upstream got: close:1001:
--- no_error_log
[error]



=== TEST 6: upstream_max_fragments, and a message within limits
--- proxy_opts
{ upstream_max_fragments = 2, aggregate_fragments = true }
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "a" }
            s:send_frame{ opcode = 0, fin = true, payload = "b" }
            for i = 1, 3 do
                s:send_frame{ opcode = i == 1 and 1 or 0, fin = false,
                              payload = "x" }
            end
            local f = s:recv_frame()
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
--- client
            say_next()
            say_next()
--- response_body
text:ab
close:1001:
--- error_log
upstream frame count (3) exceeds limit, closing
upstream got: close:1009:Payload Too Large
--- no_error_log
[error]



=== TEST 7: control frames are not subject to the limits
--- proxy_opts
{ client_max_frame_size = 4 }
--- client
            c:send_frame{ opcode = 9, payload = string.rep("p", 100) }
            say_next()
--- upstream
                local f = s:recv_frame()
                s:send_frame{ opcode = 0xa, payload = f.payload }
                s:recv_frame()
--- response_body
pong:100 bytes
--- no_error_log
[error]



=== TEST 8: the buffering ceiling (max_payload_size) bounds what a hook holds
--- proxy_opts
{ max_payload_size = 1000,
  on_frame = function(p, role, typ, payload) return payload end }
--- client
            c:send_frame{ opcode = 2, payload = string.rep("x", 999) }
            say_next()
            c:send_frame{ opcode = 2, payload = string.rep("x", 1001) }
            say_next()
--- response_body
binary:999 bytes
close:1009:Payload Too Large
--- error_log
client message of 1001 bytes exceeds the buffering limit of 1000, closing
--- no_error_log
[error]



=== TEST 9: frames nothing needs to buffer stream through whatever their size
--- http_config eval
"ws_proxy_max_payload 1k;\n" . $t::WsProxy::HttpConfig
--- proxy_opts
{}
--- client
            c:send_frame{ opcode = 2, payload = string.rep("y", 200000) }
            say_next()
            c:send_close(1000)
--- response_body
binary:200000 bytes
--- no_error_log
[error]



=== TEST 10: limits set at run time from the hook (set_max_payload_size)
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if payload == "tighten" then
          assert(p:set_max_payload_size("client", 3))
      end
      return payload
  end }
--- client
            c:send_text("tighten")
            say_next()
            c:send_text("four")
            say_next()
--- response_body
text:tighten
close:1009:Payload Too Large
--- error_log
client frame size (4) exceeds limit, closing
--- no_error_log
[error]
