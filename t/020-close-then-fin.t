# vim:set ts=4 sts=4 sw=4 et ft=:

# A peer that sends a close frame and ends its connection at once (the end
# of a lua-resty-websocket handler after send_close(), websockets' abort):
# the other peer gets that close, as the hook returned it, then the TCP
# close.  The frames and the FIN are in the socket before execute() starts
# (proxy_pause), which is when the close was lost.

use lib '.';
use t::WsRaw;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: upstream close + FIN, no hook
--- proxy_pause: 0.05
--- upstream
            s:send_text("before")
            s:send_close(1000, "server close")
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:before
close:1000:server close
error: closed
--- error_log
execute: true nil
--- no_error_log
[error]



=== TEST 2: upstream close + FIN, the hook sees the close
--- proxy_opts
{ on_frame = function(_, role, typ, payload, last, code)
      if typ == "close" then
          ngx.log(ngx.INFO, "hook saw close from ", role, ": ", code, " ",
                  payload)
      end
      return payload
  end }
--- proxy_pause: 0.05
--- upstream
            s:send_text("before")
            s:send_close(1000, "server close")
--- client
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:before
close:1000:server close
error: closed
--- error_log
hook saw close from upstream: 1000 server close
execute: true nil
--- no_error_log
[error]



=== TEST 3: upstream close + FIN, the hook rewrites the reason and the code
--- proxy_opts
{ on_frame = function(_, role, typ, payload, last, code)
      if typ == "close" then
          return "rewritten", 4001
      end
      return payload
  end }
--- proxy_pause: 0.05
--- upstream
            s:send_text("before")
            s:send_close(1000, "server close")
--- client
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:before
close:4001:rewritten
error: closed
--- no_error_log
[error]



=== TEST 4: upstream close + FIN with a hook and aggregation
--- proxy_opts
{ aggregate_fragments = true,
  on_frame = function(_, role, typ, payload) return payload end }
--- proxy_pause: 0.05
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "be" }
            s:send_frame{ opcode = 0, fin = true, payload = "fore" }
            s:send_close(1000, "server close")
--- client
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:before
close:1000:server close
error: closed
--- error_log
execute: true nil
--- no_error_log
[error]



=== TEST 5: upstream close + FIN, no hook, aggregation
--- proxy_opts
{ aggregate_fragments = true }
--- proxy_pause: 0.05
--- upstream
            s:send_frame{ opcode = 1, fin = false, payload = "be" }
            s:send_frame{ opcode = 0, fin = true, payload = "fore" }
            s:send_close(1000, "server close")
--- client
            ngx.say(ws.describe(c:recv_frame()))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:before
close:1000:server close
error: closed
--- no_error_log
[error]



=== TEST 6: client close + FIN, no hook
--- proxy_pause: 0.05
--- client_opts
{ pipelined = ws.build_frame{ opcode = 1, payload = "hi", mask = true }
              .. ws.build_frame{ opcode = 8, mask = true,
                                 payload = ws.close_payload(1000,
                                                            "client close") } }
--- client
            c:close()
            ngx.sleep(0.2)
            ngx.say("done")
--- response_body
done
--- error_log
upstream got: text:hi
upstream got: close:1000:client close
--- no_error_log
[error]
upstream got: close:1001



=== TEST 7: client close + FIN, the hook sees the close
--- proxy_opts
{ on_frame = function(_, role, typ, payload, last, code)
      if typ == "close" then
          ngx.log(ngx.INFO, "hook saw close from ", role, ": ", code, " ",
                  payload)
      end
      return payload
  end }
--- proxy_pause: 0.05
--- client_opts
{ pipelined = ws.build_frame{ opcode = 1, payload = "hi", mask = true }
              .. ws.build_frame{ opcode = 8, mask = true,
                                 payload = ws.close_payload(1000,
                                                            "client close") } }
--- client
            c:close()
            ngx.sleep(0.2)
            ngx.say("done")
--- response_body
done
--- error_log
hook saw close from client: 1000 client close
upstream got: text:hi
upstream got: close:1000:client close
--- no_error_log
[error]
upstream got: close:1001



=== TEST 8: client close + FIN, the hook rewrites it, aggregation on
--- proxy_opts
{ aggregate_fragments = true,
  on_frame = function(_, role, typ, payload, last, code)
      if typ == "close" then
          return "rewritten", 4002
      end
      return payload
  end }
--- proxy_pause: 0.05
--- client_opts
{ pipelined = ws.build_frame{ opcode = 1, fin = false, payload = "h",
                              mask = true }
              .. ws.build_frame{ opcode = 0, payload = "i", mask = true }
              .. ws.build_frame{ opcode = 8, mask = true,
                                 payload = ws.close_payload(1000,
                                                            "client close") } }
--- client
            c:close()
            ngx.sleep(0.2)
            ngx.say("done")
--- response_body
done
--- error_log
upstream got: text:hi
upstream got: close:4002:rewritten
--- no_error_log
[error]
upstream got: close:1001



=== TEST 9: client close + FIN, no hook, aggregation on
--- proxy_opts
{ aggregate_fragments = true }
--- proxy_pause: 0.05
--- client_opts
{ pipelined = ws.build_frame{ opcode = 1, fin = false, payload = "h",
                              mask = true }
              .. ws.build_frame{ opcode = 0, payload = "i", mask = true }
              .. ws.build_frame{ opcode = 8, mask = true,
                                 payload = ws.close_payload(1000,
                                                            "client close") } }
--- client
            c:close()
            ngx.sleep(0.2)
            ngx.say("done")
--- response_body
done
--- error_log
upstream got: text:hi
upstream got: close:1000:client close
--- no_error_log
[error]
upstream got: close:1001
