# vim:set ts=4 sts=4 sw=4 et ft=:

# close(), send_frame(), stats() and the $ws_proxy_* variables.

use lib '.';
use t::WsRaw;

plan 'no_plan';

# A session whose proxy closes it (close(), a limit, a failed hook): the
# client replies to the close it gets with "<code> ok", the upstream (the
# recorder) with the code and reason it got; the access log and stats()
# after execute() say what each peer answered.
our $ReplyLog = $t::WsProxy::HttpConfig . q{
    log_format replies 'replies: '
                       'client=$ws_proxy_client_close_code/'
                       '$ws_proxy_client_close_reason '
                       'upstream=$ws_proxy_upstream_close_code/'
                       '$ws_proxy_upstream_close_reason';
};

sub reply_config ($$) {
    my ($opts, $send) = @_;
    return <<"_EOC_";
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
$t::WsRaw::Recorder
        }
    }

    location /proxy {
        access_log logs/error.log replies;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new($opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            wp:execute()
            local st = assert(wp:stats())
            ngx.log(ngx.INFO, "stats: client=", st.client_close_code,
                    " upstream=", st.upstream_close_code)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("$send")
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, "ok")
        }
    }
_EOC_
}

run_tests();

__DATA__

=== TEST 1: close() from the hook with a code for each peer
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if payload == "kick" then
          assert(p:close(4001, "kicked", 4002, "client was kicked"))
          return nil
      end
      return payload
  end }
--- client
            c:send_text("kick")
            say_next()
--- response_body
close:4001:kicked
--- error_log
upstream got: close:4002:client was kicked
execute: true nil
--- no_error_log
[error]



=== TEST 2: close() from another light thread while execute() runs
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            local th = ngx.thread.spawn(function()
                ngx.sleep(0.1)
                local st = assert(wp:stats())
                ngx.log(ngx.INFO, "state: ", st.state, ", client frames: ",
                        st.client_frames)
                assert(wp:close(1001, "maintenance"))
            end)
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            ngx.thread.wait(th)
            local st = assert(wp:stats())
            ngx.log(ngx.INFO, "after: ", st.state, " closed by ",
                    st.closed_by)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("one")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1001, "ok")
        }
    }
--- response_body
text:one
close:1001:maintenance
--- error_log
state: running, client frames: 1
execute: true nil
after: done closed by proxy
--- no_error_log
[error]



=== TEST 3: close() from a timer, and after the session (clear errors)
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            assert(ngx.timer.at(0.1, function()
                local ok, err = wp:close(1000, "from timer")
                ngx.log(ngx.INFO, "timer close: ", ok, " ", err)
            end))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            assert(ngx.timer.at(0, function()
                local ok, err = wp:close()
                ngx.log(ngx.INFO, "late close: ", ok, " ", err)
                ok, err = wp:send_frame("client", "text", "x")
                ngx.log(ngx.INFO, "late send: ", ok, " ", err)
            end))
            ngx.sleep(0.05)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000)
        }
    }
--- response_body
close:1000:from timer
--- wait: 0.2
--- error_log
timer close: true nil
execute: true nil
late close: nil proxy is not running
late send: nil proxy is not running
--- no_error_log
[error]



=== TEST 4: send_frame() injects frames towards either side, in order
--- proxy_opts
{ on_frame = function(p, role, typ, payload)
      if role == "client" and payload == "hello" then
          assert(p:send_frame("client", "text", "welcome"))
          assert(p:send_frame("upstream", "binary", "meta"))
          assert(p:send_frame("client", "ping", "are you there"))
      end
      return payload
  end }
--- client
            c:send_text("hello")
            say_next()
            say_next()
            say_next()
            say_next()
--- response_body
text:welcome
ping:are you there
binary:meta
text:hello
--- grep_error_log eval: qr/upstream got: (?:binary|text):\w+/
--- grep_error_log_out
upstream got: binary:meta
upstream got: text:hello
--- no_error_log
[error]



=== TEST 5: send_frame() and close() argument errors
--- config
    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            ngx.say(pcall(wp.send_frame, wp, "nobody", "text", "x"))
            ngx.say(pcall(wp.send_frame, wp, "client", "close", "x"))
            ngx.say(pcall(wp.send_frame, wp, "client", "ping",
                          string.rep("x", 126)))
            ngx.say(pcall(wp.close, wp, 1005))
            ngx.say(pcall(wp.close, wp, 1000, string.rep("x", 124)))
            ngx.say(wp:send_frame("client", "text", "x"))
            ngx.say(wp:close())
            ngx.say(wp:stats())
        }
    }
--- response_body
falserole must be "client" or "upstream"
falsetype must be one of "text", "binary", "ping", "pong" (use close() to close)
falsecontrol frame payloads are limited to 125 bytes
falsestatus must be a valid close status code
truenilclose messages are limited to 123 bytes
nilproxy is not running
nilproxy is not running
nilproxy is not running
--- no_error_log
[error]



=== TEST 6: the access log tells the session's story
--- http_config eval
$t::WsProxy::HttpConfig . q{
    log_format ws 'ws: $ws_proxy_client_frames $ws_proxy_upstream_frames '
                  '$ws_proxy_client_messages $ws_proxy_upstream_messages '
                  '$ws_proxy_client_bytes $ws_proxy_upstream_bytes '
                  'closed_by=$ws_proxy_closed_by '
                  'client=$ws_proxy_client_close_code/'
                  '$ws_proxy_client_close_reason '
                  'upstream=$ws_proxy_upstream_close_code/'
                  '$ws_proxy_upstream_close_reason '
                  'duration=$ws_proxy_duration';
}
--- config
    location /proxy {
        access_log logs/error.log ws;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            wp:execute()
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
            c:send_text("12345")
            c:recv_frame()
            c:send_frame{ opcode = 1, fin = false, payload = "ab" }
            c:send_frame{ opcode = 0, fin = true, payload = "cd" }
            c:recv_frame()
            c:send_close(1000, "bye")
            ngx.say(ws.describe(c:recv_frame()))
        }
    }
--- response_body
close:1000:bye
--- wait: 0.1
--- error_log eval
qr/ws: 4 3 2 2 \d+ \d+ closed_by=client client=1000\/bye upstream=1000\/bye duration=\d+\.\d{3}/
--- no_error_log
[error]



=== TEST 7: a proxy kept after its session ended cannot reach the next session
--- config
    # Sessions are named by a per-worker id, not by their address: the
    # memory of the first session may hold the second one by then.  stats()
    # keeps the final figures of its own session; every control says it is
    # not running.
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local kept = package.loaded.kept_proxies or {}
            package.loaded.kept_proxies = kept
            local wp = assert(proxy.new({ on_frame = function(_, _, _, p)
                                              return p
                                          end }))
            kept[ngx.var.arg_name] = wp
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, ngx.var.arg_name, " execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c1 = assert(ws.client("/proxy?name=old"))
            c1:send_text("one")
            c1:recv_frame()
            c1:send_close(1000, "bye")
            c1:recv_frame()
            ngx.sleep(0.1)

            local c2 = assert(ws.client("/proxy?name=new"))
            c2:send_text("two")
            ngx.say("new: ", ws.describe(c2:recv_frame()))

            local old = package.loaded.kept_proxies.old
            local st = assert(old:stats())
            ngx.say("old stats: ", st.state, " ", st.client_frames, " ",
                    st.closed_by)
            ngx.say("old close: ", old:close(4666, "x"))
            ngx.say("old send: ", old:send_frame("client", "text", "x"))
            ngx.say("old limit: ", old:set_max_payload_size("client", 1))
            ngx.say("new stats: ",
                    package.loaded.kept_proxies.new:stats().state)

            c2:send_text("still here")
            ngx.say("new: ", ws.describe(c2:recv_frame()))
            c2:send_close(1000, "done")
            ngx.say("new: ", ws.describe(c2:recv_frame()))
        }
    }
--- response_body
new: text:two
old stats: done 2 client
old close: nilproxy is not running
old send: nilproxy is not running
old limit: nilproxy is not running
new stats: running
new: text:still here
new: close:1000:done
--- wait: 0.1
--- error_log
old execute: true nil
new execute: true nil
--- no_error_log
[error]



=== TEST 8: the peers' replies to close() are recorded
--- http_config eval: $::ReplyLog
--- config eval
::reply_config('{ on_frame = function(p, role, typ, payload)
    if payload == "kick" then
        assert(p:close(4001, "kicked", 4002, "client was kicked"))
    end
    return payload
end }', "kick")
--- response_body
close:4001:kicked
--- wait: 0.1
--- error_log
upstream got: close:4002:client was kicked
stats: client=4001 upstream=4002
replies: client=4001/ok upstream=4002/client was kicked
--- no_error_log
[error]



=== TEST 9: the peers' replies to a limit's closes are recorded
--- http_config eval: $::ReplyLog
--- config eval
::reply_config('{ client_max_frame_size = 3 }', "too long")
--- response_body
close:1009:Payload Too Large
--- wait: 0.1
--- error_log
upstream got: close:1001:
stats: client=1009 upstream=1001
replies: client=1009/ok upstream=1001/
--- no_error_log
[error]



=== TEST 10: the peers' replies to a failed hook's closes are recorded
--- http_config eval: $::ReplyLog
--- config eval
::reply_config('{ on_frame = function() error("boom") end }', "x")
--- response_body
close:1011:Internal Error
--- wait: 0.1
--- error_log
upstream got: close:1011:Internal Error
stats: client=1011 upstream=1011
replies: client=1011/ok upstream=1011/Internal Error
