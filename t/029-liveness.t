# vim:set ts=4 sts=4 sw=4 et ft=:

# Liveness: why a session ended ($ws_proxy_end, stats().ended_by), the idle
# timeout and the module's own heartbeat, with raw peers (t/WsRaw.pm's
# sections, plus `proxy_conf`: directives for the proxy's location).  The
# proxy logs "execute: <ok> <err>" and then "end: <$ws_proxy_end>
# <stats().ended_by>".

use lib '.';
use t::WsRaw;

plan 'no_plan';

our $Recorder = $t::WsRaw::Recorder;

# runs before t::WsRaw's preprocessor (the last added runs first), which
# leaves a block with a config alone
add_block_preprocessor(sub {
    my $block = shift;

    return if !defined $block->client;

    my $opts = $block->proxy_opts // '{}';
    my $conf = $block->proxy_conf // '';
    my $upstream = $block->upstream // $Recorder;
    my $client = $block->client;

    $block->set_value("config", <<"_EOC_");
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
$upstream
        }
    }

    location /proxy {
        $conf
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new($opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
            ngx.log(ngx.INFO, "end: ", ngx.var.ws_proxy_end, " ",
                    wp:stats().ended_by)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy"))
$client
        }
    }
_EOC_

    $block->set_value("no_error_log", "[error]\n[alert]\n")
        if !defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the client closes
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c:send_close(1000, "bye")
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
text:hi
close:1000:bye
--- error_log
execute: true nil
end: client_close client_close



=== TEST 2: the upstream closes
--- upstream
            s:send_close(1000, "server")
            ngx.log(ngx.INFO, "upstream got: ", ws.describe(s:recv_frame()))
--- client
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1000:server
error: closed
--- error_log
execute: true nil
end: upstream_close upstream_close



=== TEST 3: a protocol violation
--- client
            c:send_frame{ opcode = 1, rsv = 2, payload = "bad" }
            ngx.say(ws.describe(c:recv_frame()))
--- response_body
close:1002:rsv bits set
--- error_log
end: violation violation



=== TEST 4: a limit
--- proxy_opts
{ client_max_frame_size = 4 }
--- client
            c:send_text("too long")
            local f = c:recv_frame()
            ngx.say(ws.describe(f))
            c:send_close(f.code, f.reason)
--- response_body
close:1009:Payload Too Large
--- error_log
end: limit limit



=== TEST 5: the client goes away without a close frame
--- client
            c:send_text("hi")
            ngx.say(ws.describe(c:recv_frame()))
            c.sock:close()
            ws.sleep(0.2)
--- response_body
text:hi
--- error_log
end: client_close client_close
