package t::WsProxy;

# Shared set-up of the Test::Nginx suites: the Lua paths, a WebSocket echo
# upstream (Debian's lua-resty-websocket, an implementation independent of
# this module), and defaults every block gets: "GET /t" as the request and
# no [alert], [crit] or [emerg] in the error log.

use strict;
use warnings;
use Test::Nginx::Socket::Lua -Base;
use Cwd qw(cwd);

our $pwd = cwd();

# every suite of this module runs its peers in Lua
if (($ENV{TEST_NGINX_LUA} || '') eq 'none') {
    print "1..0 # SKIP no lua-nginx-module on target "
          . ($ENV{TEST_NGINX_TARGET} || '?') . " (TEST_NGINX_LUA=none)\n";
    exit 0;
}

$ENV{TEST_NGINX_UPSTREAM_PORT} ||= 1985;
$ENV{TEST_NGINX_TLS_PORT} ||= 1986;

# the suite's slowness factor (util/run-tests), for the Lua peers' waits
our $Slow = $ENV{TEST_NGINX_SLOW_FACTOR} || 1;

# the target's Lua paths (util/run-tests: TEST_NGINX_LUA_PATH, e.g. a
# lua-resty-core that is not on the default path) after the project's
our $LuaPath = join '', map { "$_;" } grep { length }
    split /;+/, ($ENV{TEST_NGINX_LUA_PATH} || '');

our $HttpConfig = qq{
    lua_package_path "$pwd/lib/?.lua;$pwd/t/lua/?.lua;$LuaPath;";

    init_worker_by_lua_block {
        local proxy = require "resty.websocket.proxy"

        require("wstest").slow = $Slow

        proxy._tests = {
            echo = "ws://127.0.0.1:$ENV{TEST_NGINX_UPSTREAM_PORT}/echo",
            pong = "ws://127.0.0.1:$ENV{TEST_NGINX_UPSTREAM_PORT}/pong",
            upstream = "ws://127.0.0.1:$ENV{TEST_NGINX_UPSTREAM_PORT}",
        }
    }

    server {
        listen $ENV{TEST_NGINX_UPSTREAM_PORT};

        location /echo {
            content_by_lua_block {
                local server = require "nginx.websocket.server"

                local wb, err = server:new({ max_payload_len = 2 ^ 31 })
                if not wb then
                    ngx.log(ngx.ERR, "failed creating server: ", err)
                    return ngx.exit(444)
                end

                local once = not ngx.var.arg_repeat

                repeat
                    local data, typ, err = wb:recv_frame()
                    if not data then
                        ngx.log(ngx.ERR, "failed receiving frame: ", err)
                        return ngx.exit(444)
                    end

                    ngx.log(ngx.INFO, "frame type: ", typ,
                            ", payload: \\"", #data > 64 and #data .. " bytes"
                                              or data, "\\"")

                    local bytes
                    if typ == "close" then
                        bytes, err = wb:send_close(err, data)

                    elseif typ == "ping" then
                        bytes, err = wb:send_pong(data)

                    elseif typ == "binary" then
                        bytes, err = wb:send_binary(data)

                    elseif typ == "text" then
                        bytes, err = wb:send_text(data)

                    else
                        bytes = true
                    end

                    if not bytes then
                        ngx.log(ngx.ERR, "failed sending frame: ", err)
                        return ngx.exit(444)
                    end
                until typ == "close" or once
            }
        }

        location /pong {
            content_by_lua_block {
                local server = require "nginx.websocket.server"

                local wb, err = server:new()
                if not wb then
                    ngx.log(ngx.ERR, "failed creating server: ", err)
                    return ngx.exit(444)
                end

                local once = not ngx.var.arg_repeat

                repeat
                    local data, typ, err = wb:recv_frame()
                    if not data then
                        ngx.log(ngx.ERR, "failed receiving frame: ", err)
                        return ngx.exit(444)
                    end

                    ngx.log(ngx.INFO, "frame type: ", typ,
                            ", payload: \\"", data, "\\"")

                    local bytes, err = wb:send_pong("heartbeat server")
                    if not bytes then
                        ngx.log(ngx.ERR, "failed sending frame: ", err)
                        return ngx.exit(444)
                    end
                until typ == "close" or once
            }
        }
    }
};

our @EXPORT = qw(
    $pwd
    $HttpConfig
    use_test_certs
);


# test certificates (t/certs.sh) in build/test-certs (TEST_NGINX_WORKDIR's,
# so that targets side by side make their own), named by $TEST_NGINX_CERTS
# in configs, and the port of a TLS server
sub use_test_certs () {
    my $certs = ($ENV{TEST_NGINX_WORKDIR} || "$pwd/build") . "/test-certs";
    system("t/certs.sh", $certs) == 0 or die "t/certs.sh failed";
    $ENV{TEST_NGINX_CERTS} = $certs;
}

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->request && !defined $block->raw_request) {
        $block->set_value("request", "GET /t");
    }

    if (!defined $block->http_config) {
        $block->set_value("http_config", $HttpConfig);
    }

    my $nel = $block->no_error_log;
    my @lines;

    if (defined $nel) {
        # a qr// (from "--- no_error_log eval") stays a pattern
        @lines = ref $nel eq 'ARRAY' ? @$nel
               : ref $nel ? ($nel)
               : split /\n/, $nel;
    }

    # --- allowed_levels: those of the three the block expects (nginx's own
    # [crit] for a unix socket that does not exist, [emerg] with must_die)
    my $allowed = $block->can('allowed_levels') && $block->allowed_levels;
    my @allowed = $allowed ? split /\s+/, $allowed : ();

    for my $lvl ('[alert]', '[crit]', '[emerg]') {
        next if grep { $_ eq $lvl } @allowed;
        push @lines, $lvl unless grep { $_ eq $lvl } @lines;
    }

    $block->set_value("no_error_log", \@lines);
});

log_level($ENV{TEST_NGINX_LOG_LEVEL} || "info");
no_long_string();

1;
