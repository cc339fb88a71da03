package t::WsRaw;

# Blocks that read like specifications: a raw client (the `client` section,
# Lua with `c` the connected client and `ws` the frame writer of
# t/lua/wstest.lua) talks through the proxy (options in `proxy_opts`) to a
# raw upstream (the `upstream` section, Lua with `s` and `ws`; by default a
# recorder that logs "upstream got: <frame>", echoes data frames and answers
# a close with the same code and reason; `proxy_directives`: the proxy
# location's ws_proxy_* directives).  The proxy logs
# "execute: <ok> <err>" when execute() returns.
#
# permessage-deflate (RFC 7692) is written in Perl, with the zlib of
# Compress::Raw::Zlib: in the Lua sections, Z<<perl>> is the payload the
# Perl expression's bytes deflate to (raw deflate, a sync flush, its last
# four bytes 00 00 ff ff taken off as RFC 7692 7.2.1 says) and B<<perl>>
# the expression's bytes as they are; both reach Lua through a file under
# build/ (a payload of 100 KB is no Lua literal).  inflate_z_lines(), a
# response_body_filters sub, inflates each "z:<hex>" line of a response
# body into "inflated:<text>".

use strict;
use warnings;
use t::WsProxy -Base;
use Compress::Raw::Zlib;
use Digest::MD5 qw(md5_hex);
use File::Path qw(make_path);

our @EXPORT = qw(pmd_deflate pmd_deflate_repeat inflate_z_lines);

our $ZDir = ($ENV{TEST_NGINX_WORKDIR} || "$t::WsProxy::pwd/build")
    . "/wsraw-z";

# the payload of a message of $times copies of $chunk (an inflate bomb
# without holding it whole)
sub pmd_deflate_repeat ($$;$) {
    my ($chunk, $times, $bits) = @_;
    my ($d, $st) = Compress::Raw::Zlib::Deflate->new(
        -WindowBits => -($bits // 15), -Level => 9, -AppendOutput => 1);
    die "deflate init: $st" unless $d;
    my $out = '';
    for (1 .. $times) {
        $d->deflate($chunk, $out) == Z_OK or die "deflate failed";
    }
    $d->flush($out, Z_SYNC_FLUSH) == Z_OK or die "flush failed";
    $out =~ s/\x00\x00\xff\xff\z// or die "no sync flush at the end";
    return $out;
}

# the payload of one compressed message: raw deflate with a window of
# 2^bits (default 15), flushed, without the flush's 00 00 ff ff
sub pmd_deflate ($;$) {
    my ($data, $bits) = @_;
    return pmd_deflate_repeat($data, 1, $bits);
}

sub inflate_z_lines ($) {
    my $body = shift;
    $body =~ s{\bz:([0-9a-f]*)$}{
        my ($i) = Compress::Raw::Zlib::Inflate->new(-WindowBits => -15);
        my $in = pack("H*", $1) . "\x00\x00\xff\xff";
        my $out = '';
        my $st = $i->inflate($in, $out);
        "inflated:" . ($st == Z_OK || $st == Z_STREAM_END ? $out
                                                          : "error $st")
    }gme;
    return $body;
}

# Z<<perl>> and B<<perl>>: a Lua expression for those bytes
sub zexpand ($) {
    my $code = shift;
    return $code unless defined $code;
    $code =~ s{([ZB])<<(.*?)>>}{
        my ($kind, $expr) = ($1, $2);
        my $bytes = eval $expr;
        die "$kind<<$expr>>: $@" if $@;
        $bytes = pmd_deflate($bytes) if $kind eq 'Z';
        make_path($ZDir);
        my $path = "$ZDir/" . md5_hex($bytes) . ".bin";
        open my $fh, '>:raw', $path or die "$path: $!";
        print $fh $bytes;
        close $fh;
        qq{require("wstest").file("$path")}
    }gse;
    return $code;
}

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

    if (defined sec($block, 'config')) {
        $block->set_value("config", zexpand(sec($block, 'config')));
        return;
    }

    return if !defined sec($block, 'client');

    my $opts = sec($block, 'proxy_opts') // '{}';
    my $upstream = zexpand(sec($block, 'upstream')) // $Recorder;
    my $client = zexpand(sec($block, 'client'));
    my $pause = sec($block, 'proxy_pause');
    my $copts = zexpand(sec($block, 'client_opts')) // 'nil';
    my $sleep = defined $pause ? "require(\"wstest\").sleep($pause)" : '';
    my $directives = sec($block, 'proxy_directives') // '';

    $block->set_value("config", <<"_EOC_");
    location /upstream {
        content_by_lua_block {
            local ws = require "wstest"
            local s = assert(ws.server())
$upstream
        }
    }

    location /proxy {
$directives
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
