package t::WsRaw;

# Blocks that read like specifications: a raw client (the `client` section,
# Lua with `c` the connected client and `ws` the frame writer of
# t/lua/wstest.lua) talks through the proxy (options in `proxy_opts`) to a
# raw upstream (the `upstream` section, Lua with `s` and `ws`; by default a
# recorder that logs "upstream got: <frame>", echoes data frames and answers
# a close with the same code and reason).  The proxy logs
# "execute: <ok> <err>" when execute() returns.

use strict;
use warnings;
use t::WsProxy -Base;

our $Recorder = <<'_EOC_';
                while true do
                    local f, err = s:recv_frame()
                    ngx.log(ngx.INFO, "upstream got: ", ws.describe(f, err))
                    if not f then
                        break
                    end
                    if f.opcode == 0x8 then
                        s:send_close(f.code, f.reason)
                        break
                    end
                    if f.opcode <= 0x2 then
                        s:send_frame{ opcode = f.opcode, fin = f.fin,
                                      payload = f.payload }
                    end
                end
_EOC_

sub sec ($$) {
    my ($block, $name) = @_;
    return $block->can($name) ? $block->$name : undef;
}

add_block_preprocessor(sub {
    my $block = shift;

    return if defined sec($block, 'config') || !defined sec($block, 'client');

    my $opts = sec($block, 'proxy_opts') // '{}';
    my $upstream = sec($block, 'upstream') // $Recorder;
    my $client = sec($block, 'client');
    my $pause = sec($block, 'proxy_pause');
    my $copts = sec($block, 'client_opts') // 'nil';
    my $sleep = defined $pause ? "require(\"wstest\").sleep($pause)" : '';

    $block->set_value("config", <<"_EOC_");
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
$upstream
        }
    }

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new($opts))
            assert(wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                              .. "/upstream"))
            $sleep
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy", $copts))
            local function say_next()
                ngx.say(ws.describe(c:recv_frame()))
            end
$client
        }
    }
_EOC_
});

1;
