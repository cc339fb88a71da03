# vim:set ts=4 sts=4 sw=4 et ft=:

# What an on_frame hook does to the fragments of a message that is not
# aggregated, and send_frame() while a message is open (RFC 6455 5.4: the
# peer always gets whole messages, their frames not interleaved, with
# UTF-8 text).

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: the hook drops fragments: the first one drops the message, a middle one is not sent, the last one becomes an empty last frame
The client's frames whose payload is "drop" are dropped.  The first
message loses its first frame: none of it reaches the upstream, and the
hook does not see its continuations.  The second loses a middle frame and
its last one: the upstream gets the rest, ended by an empty continuation.
--- proxy_opts
{ on_frame = function(p, role, typ, payload, fin)
      if role == "client" then
          ngx.log(ngx.INFO, "hook: ", typ, " ", payload, " ", fin)
          if payload == "drop" then
              return nil
          end
      end
      return payload
  end }
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "drop" }
            c:send_frame{ opcode = 0, fin = false, payload = "b" }
            c:send_frame{ opcode = 0, payload = "c" }
            c:send_text("next")
            say_next()
            c:send_frame{ opcode = 2, fin = false, payload = "1" }
            c:send_frame{ opcode = 0, fin = false, payload = "drop" }
            c:send_frame{ opcode = 0, fin = false, payload = "3" }
            c:send_frame{ opcode = 0, payload = "drop" }
            say_next()
            say_next()
            say_next()
            c:send_close(1000, "bye")
            say_next()
--- response_body
text:next
binary:1 (fin=0)
continuation:3 (fin=0)
continuation:
close:1000:bye
--- error_log eval
[
qr/\[lua\] .*?\bhook: text drop false/,
qr/\[lua\] .*?\bhook: text next true/,
qr/upstream got: text:next \(masked\)/,
qr/upstream got: binary:1 \(fin=0\) \(masked\)/,
qr/\[lua\] .*?\bhook: continuation drop false/,
qr/upstream got: continuation:3 \(fin=0\) \(masked\)/,
qr/\[lua\] .*?\bhook: continuation drop true/,
qr/upstream got: continuation: \(masked\)/,
]
--- no_error_log eval
[
qr/\[(?:error|warn)\]/,
qr/hook: continuation [bc] /,
qr/upstream got: (?:text:drop|continuation:[bc]|continuation:drop)/,
]



=== TEST 2: text: a fragment rewritten inside a character, the rest of the character forwarded: a hook error, nothing invalid sent
The client's text "a\xc3" "\xa9b" ("aéb" cut inside the é): the hook
rewrites the first fragment to "x", and forwards the second, which would
send the upstream "x\xa9b".  That is refused as a rewrite to text that
is not UTF-8 is: both peers get 1011.
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if role == "client" and typ == "text" then
          return "x"
      end
      return payload
  end }
--- upstream
            while true do
                local f, err = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                if not f or f.opcode == 0x8 then
                    break
                end
            end
            s:send_close(1000, "")
--- client
            c:send_frame{ opcode = 1, fin = false, payload = "a\195" }
            c:send_frame{ opcode = 0, payload = "\169b" }
            say_next()
            c:send_close(1000, "")
--- response_body
close:1011:Internal Error
--- error_log eval
[
qr/upstream got: text:x \(fin=0\) \(masked\)/,
qr/upstream got: close:1011:Internal Error/,
qr/execute: nil on_frame handler failed for a frame from client: invalid frame from on_frame: text that is not UTF-8\b/,
]
--- no_error_log
upstream got: continuation



=== TEST 3: text: the fragment with the end of a character dropped, the next one forwarded: a hook error; dropping it too ends the message whole
The client's text "a\xc3" "\xa9" "b" twice.  The hook drops the middle
fragment (the end of the é): the first time the last one is forwarded,
and would follow a cut character (1011 for both); in the second session
the hook rewrites the last one to "\xa9!", which ends the character:
the upstream gets "a\xc3" and "\xa9!", "aé!".
--- config
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
            while true do
                local f, err = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                if not f or f.opcode == 0x8 then
                    break
                end
            end
            s:send_close(1000, "")
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local mend = ngx.var.arg_mend
            local wp = assert(proxy.new({
                on_frame = function(p, role, typ, payload, fin)
                    if role == "client" and payload == "\169" then
                        return nil
                    end
                    if mend and role == "client" and payload == "b" then
                        return "\169!"
                    end
                    return payload
                end,
            }))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            for _, q in ipairs({ "", "?mend=1" }) do
                local c = assert(ws.client("/proxy" .. q))
                c:send_frame{ opcode = 1, fin = false, payload = "a\195" }
                c:send_frame{ opcode = 0, fin = false, payload = "\169" }
                c:send_frame{ opcode = 0, payload = "b" }
                c:send_close(1000, "")
                ngx.say(ws.describe(c:recv_frame()))
                c:close()
            end
        }
    }
--- response_body
close:1011:Internal Error
close:1000:
--- error_log eval
[
qr/upstream got: text:a\xc3 \(fin=0\) \(masked\)/,
qr/upstream got: close:1011:Internal Error/,
qr/execute: nil on_frame handler failed for a frame from client: invalid frame from on_frame: text that is not UTF-8\b/,
qr/upstream got: continuation:\xa9! \(masked\)/,
qr/execute: true nil/,
]
--- no_error_log eval
qr/upstream got: continuation:b/



=== TEST 4: send_frame() of data while a message is open towards that peer waits for its end; a ping does not
The upstream sends "a" "b" in two frames.  The hook, on the second,
sends the client a binary frame and a ping: the ping goes before the
frame held for the hook, the binary after the message's last frame.
--- proxy_opts
{ on_frame = function(p, role, typ, payload, fin)
      if role == "upstream" and typ == "continuation" then
          assert(p:send_frame("client", "binary", "injected"))
          assert(p:send_frame("client", "ping", "p"))
      end
      return payload
  end }
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "a" }
            s:send_frame{ opcode = 0, payload = "b" }
            local f = s:recv_frame()
            s:send_close(f.code, f.reason)
--- client
            say_next()
            say_next()
            say_next()
            say_next()
            c:send_close(1000, "")
            say_next()
--- response_body
text:a (fin=0)
ping:p
continuation:b
binary:injected
close:1000:
--- no_error_log
[error]
[warn]
