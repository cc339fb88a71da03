# vim:set ts=4 sts=4 sw=4 et ft=:

# The peer that breaks a rule (a protocol violation or a limit) gets its
# close at once, after the bytes the proxy already holds for it: nothing the
# other peer sends after that close reaches the offender.  The other peer
# gets 1001 after the offender's frames accepted before the violation, and
# its close handshake goes on as for any close of the proxy's: its reply
# (not forwarded) ends the session, or close_timeout does.  This is the
# behaviour of Kong's library (its t/08-limits.t TESTs 2, 3 and 6).

use lib '.';
use t::WsRaw;

plan 'no_plan';

# the upstream echoes the client's first frame late: after the close the
# proxy sent to the offending client
our $SlowEcho = <<'_EOC_';
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                ws.sleep(0.1)
                s:send_frame{ opcode = 1, payload = "echo " .. f.payload }
                f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                s:send_close(f.code, f.reason)
_EOC_

# the offending upstream reads everything that comes to it, until the end
our $Bad = <<'_EOC_';
                s:send_frame{ opcode = 1, rsv = 2, payload = "x" }
                while true do
                    local f, err = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                    if not f then
                        break
                    end
                end
_EOC_

# the client answers the 1001 with a text, then its close reply
our $Late = <<'_EOC_';
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_text("late")
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
_EOC_

our $Hook = <<'_EOC_';
{ on_frame = function(_, role, typ, payload) return payload end }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("upstream", $SlowEcho)
        if $block->name =~ /client/ && !defined $block->upstream;
    $block->set_value("upstream", $Bad) if $block->name =~ /upstream/;
    $block->set_value("client", $Late) if $block->name =~ /upstream/;
    $block->set_value("proxy_opts", $Hook) if $block->name =~ /hook/;
    $block->set_value("no_error_log",
                      "[error]\n[alert]\nclose handshake timed out\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the client sets RSV2 after a valid text: its 1002 at once, not the later echo
--- client
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            c:send_text("after")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1002:rsv bits set
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: text:hello (masked)
upstream got: close:1001:
--- error_log
execute: nil client protocol error: rsv bits set
client protocol error: rsv bits set, closing with 1002



=== TEST 2: the client sets RSV2 after a valid text, with a hook
--- client
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1002:rsv bits set
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: text:hello (masked)
upstream got: close:1001:
--- error_log
execute: nil client protocol error: rsv bits set



=== TEST 3: the client sends invalid UTF-8 after a valid text (hook)
--- client
            c:send_text("hello")
            c:send_text("\xff\xfe")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1007:invalid UTF-8 text
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: text:hello (masked)
upstream got: close:1001:
--- error_log
execute: nil client protocol error: invalid UTF-8 in a text message



=== TEST 4: the client exceeds a size limit after a valid text, then replies
--- proxy_opts
{ client_max_frame_size = 10 }
--- client
            c:send_text("hello")
            c:send_text(string.rep("x", 11))
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_text("ignored")
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1009:Payload Too Large
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: text:hello (masked)
upstream got: close:1001:
--- error_log
execute: true nil



=== TEST 5: the upstream violates: its 1002 at once, the client's frames after it not forwarded
--- response_body
close:1001:
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: close:1002:rsv bits set
upstream got: error: closed
--- error_log
execute: nil upstream protocol error: rsv bits set
upstream protocol error: rsv bits set, closing with 1002



=== TEST 6: the upstream violates, with a hook
--- response_body
close:1001:
error: closed
--- grep_error_log eval: qr/upstream got: .*?(?=,)/
--- grep_error_log_out
upstream got: close:1002:rsv bits set
upstream got: error: closed
--- error_log
execute: nil upstream protocol error: rsv bits set



=== TEST 7: the other peer never replies: the offender's close still at once, the end at close_timeout
--- proxy_opts
{ close_timeout = require("wstest").ms(1000) }
--- upstream
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                ws.sleep(2)
--- client
            local t0 = ngx.now()
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
            ngx.update_time()
            ngx.say("at once: ", ngx.now() - t0 < ws.ms(500) / 1000)
            ngx.say(ws.describe(c:recv_frame()))
            ngx.update_time()
            ngx.say("after close_timeout: ", ngx.now() - t0 >= 0.9)
--- response_body
close:1002:rsv bits set
at once: true
error: closed
after close_timeout: true
--- error_log
upstream got: text:hello
upstream got: close:1001:
close handshake timed out
--- no_error_log
[error]
[alert]
--- timeout: 5



=== TEST 8: what the proxy already holds for the offending client goes before its close
--- upstream
                s:send_text(string.rep("a", 4 * 1024 * 1024))
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                s:send_close(f.code, f.reason)
--- client
            ws.sleep(0.2)
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            local f = c:recv_frame()
            ngx.say(f.opcode, " ", #f.payload)
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
1 4194304
close:1002:rsv bits set
error: closed
--- error_log
upstream got: close:1001:
--- timeout: 10
