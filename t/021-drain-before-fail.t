# vim:set ts=4 sts=4 sw=4 et ft=:

# Drain before fail: when a peer violates the protocol, what the other peer
# had sent towards the offender is still delivered, until the other peer's
# close reply (to the proxy's 1001) or close_timeout; then the offender
# gets its RFC status.  Nothing the offender sends after the violation is
# forwarded.

use lib '.';
use t::WsRaw;

plan 'no_plan';

our $SlowEcho = <<'_EOC_';
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                ngx.sleep(0.1)
                s:send_frame{ opcode = 1, payload = "echo " .. f.payload }
                f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                s:send_close(f.code, f.reason)
_EOC_

our $Bad = <<'_EOC_';
                s:send_frame{ opcode = 1, rsv = 2, payload = "x" }
                while true do
                    local f = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                    if not f or f.opcode == 8 then
                        break
                    end
                end
_EOC_

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
    $block->set_value("no_error_log", "[error]\n[alert]\n");
});

run_tests();

__DATA__

=== TEST 1: the client sets RSV2 after a valid text: the echo arrives first
--- client
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            c:send_text("after")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:echo hello
close:1002:rsv bits set
--- error_log
upstream got: text:hello
upstream got: close:1001:
client protocol error: rsv bits set



=== TEST 2: the client sets RSV2 after a valid text, with a hook
--- client
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:echo hello
close:1002:rsv bits set
--- error_log
upstream got: text:hello
upstream got: close:1001:
--- proxy_opts
{ on_frame = function(_, role, typ, payload) return payload end }



=== TEST 3: the client sends invalid UTF-8 after a valid text (hook)
--- proxy_opts
{ on_frame = function(_, role, typ, payload) return payload end }
--- client
            c:send_text("hello")
            c:send_text("\xff\xfe")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:echo hello
close:1007:invalid UTF-8 text
--- error_log
upstream got: text:hello
upstream got: close:1001:



=== TEST 4: the client exceeds a size limit after a valid text
--- proxy_opts
{ client_max_frame_size = 10 }
--- client
            c:send_text("hello")
            c:send_text(string.rep("x", 11))
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:echo hello
close:1009:Payload Too Large
--- error_log
upstream got: text:hello
upstream got: close:1001:



=== TEST 5: the upstream violates: the client's frames before its reply arrive
--- response_body
close:1001:
error: closed
--- error_log
upstream got: text:late
upstream got: close:1002:rsv bits set
upstream protocol error: rsv bits set



=== TEST 6: the upstream violates, with a hook
--- response_body
close:1001:
error: closed
--- error_log
upstream got: text:late
upstream got: close:1002:rsv bits set



=== TEST 7: the other peer never replies: the offender's close after close_timeout
--- proxy_opts
{ close_timeout = 200 }
--- upstream
                local f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                s:send_frame{ opcode = 1, payload = "echo " .. f.payload }
                f = s:recv_frame()
                ngx.log(ngx.INFO, "upstream got: ", ws.describe(f))
                ngx.sleep(1)
--- client
            c:send_text("hello")
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:echo hello
close:1002:rsv bits set
--- error_log
upstream got: close:1001:
