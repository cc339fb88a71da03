# vim:set ts=4 sts=4 sw=4 et ft=:

# Upstream groups: connect("ws://<group>/...") and ws_proxy_pass through an
# upstream {} block, with nginx's own balancers.  Four test servers of one
# nginx server block: A, B and D answer, C (the third port) is not
# listened on (a dead server).  Each says which one it is in its first
# frame ("srv:<port>"); on /st it first answers ?p<port>=<status> with that
# status instead of 101.

use lib '.';
use t::WsProxy;

plan 'no_plan';

# after the ports t/009 takes from TEST_NGINX_TLS_PORT
$ENV{TEST_NGINX_GROUP_PORT} ||= $ENV{TEST_NGINX_TLS_PORT} + 6;

our $A = $ENV{TEST_NGINX_GROUP_PORT};
our $B = $A + 1;
our $C = $A + 2;    # nothing listens here
our $D = $A + 3;

our $Config = $t::WsProxy::HttpConfig . <<"_EOC_";
    log_format addrs 'addrs: \$ws_proxy_upstream_addr status=\$status';

    upstream rr {
        server 127.0.0.1:$A weight=3;
        server 127.0.0.1:$B;
        server 127.0.0.1:$C;
    }

    upstream down {
        server 127.0.0.1:$A;
        server 127.0.0.1:$B;
        server 127.0.0.1:$C down;
    }

    upstream backup {
        server 127.0.0.1:$A;
        server 127.0.0.1:$D backup;
    }

    upstream backup_dead {
        server 127.0.0.1:$C;
        server 127.0.0.1:$D backup;
    }

    upstream hashed {
        hash \$arg_room;
        server 127.0.0.1:$A;
        server 127.0.0.1:$B;
        server 127.0.0.1:$D;
    }

    upstream fo {
        server 127.0.0.1:$A;
        server 127.0.0.1:$B;
        server 127.0.0.1:$D;
    }

    upstream dead {
        server 127.0.0.1:$C;
        server 127.0.0.2:$C;
    }

    upstream ka {
        server 127.0.0.1:$A;
        keepalive 4;
    }

    upstream lc {
        least_conn;
        server 127.0.0.1:$A;
        server 127.0.0.1:$B;
    }

    server {
        listen 127.0.0.1:$A;
        listen 127.0.0.1:$B;
        listen 127.0.0.1:$D;

        location /plain {
            return 200 "plain\n";
        }

        location / {
            content_by_lua_block {
                local ws = require "wstest"
                local port = ngx.var.server_port
                ngx.log(ngx.INFO, "upstream request ",
                        ngx.var.connection_requests, " on its connection")
                local st = ngx.var["arg_p" .. port]
                if ngx.var.uri == "/st" and st then
                    return ngx.exit(tonumber(st))
                end
                if ngx.var["arg_hold" .. port] then
                    ngx.sleep(ws.ms(1000) / 1000)
                end
                local s = assert(ws.server())
                s:send_text("srv:" .. port)
                while true do
                    local f = s:recv_frame()
                    if not f then
                        return
                    end
                    if f.opcode == 8 then
                        s:send_close(f.code, "bye")
                        return
                    end
                    s:send_frame{ opcode = f.opcode, payload = f.payload }
                end
            }
        }
    }
_EOC_

our $Proxy = <<'_EOC_';
    location ~ ^/proxy/(\w+)(/.*)$ {
        access_log logs/error.log addrs;
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local uri = "ws://" .. ngx.var[1] .. ngx.var[2]
                        .. ngx.var.is_args .. (ngx.var.args or "")
            local ok, err = wp:connect(uri)
            if not ok then
                ngx.log(ngx.INFO, "connect: ", err)
                return
            end
            ngx.log(ngx.INFO, "chosen: ", wp:stats().upstream_addr)
            wp:execute()
        }
    }

    location ~ ^/pass/(\w+)(/.*)$ {
        access_log logs/error.log addrs;
        ws_proxy_pass ws://$1$2$is_args$args;
    }

    location /http {
        proxy_pass http://ka/plain;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }

    location ~ ^/once/(\w+)(/.*)$ {
        access_log logs/error.log addrs;
        ws_proxy_next_upstream_tries 1;
        ws_proxy_pass ws://$1$2$is_args$args;
    }

    location ~ ^/slowonce/(\w+)(/.*)$ {
        access_log logs/error.log addrs;
        ws_proxy_read_timeout 300ms;
        ws_proxy_next_upstream_timeout 200ms;
        ws_proxy_pass ws://$1$2$is_args$args;
    }

    location ~ ^/slow/(\w+)(/.*)$ {
        access_log logs/error.log addrs;
        ws_proxy_read_timeout 300ms;
        ws_proxy_pass ws://$1$2$is_args$args;
    }
_EOC_

# sessions(path, n): n sessions; a table of server port -> count ("403"
# etc. for a refusal)
our $Client = <<'_EOC_';
            local ws = require "wstest"
            local function session(path)
                local c, err, r = ws.client(path)
                if not c then
                    return r and tostring(r.status) or err
                end
                local f = c:recv_frame()
                c:send_close(1000, "done")
                c:recv_frame()
                c:close()
                return f and f.payload:match("^srv:(%d+)$") or "?"
            end
            local function sessions(path, n)
                local got = {}
                for i = 1, n do
                    local s = session(path)
                    got[s] = (got[s] or 0) + 1
                end
                return got
            end
            local function show(got)
                local keys = {}
                for k in pairs(got) do keys[#keys + 1] = k end
                table.sort(keys)
                local out = {}
                for _, k in ipairs(keys) do
                    out[#out + 1] = k .. "=" .. got[k]
                end
                return table.concat(out, " ")
            end
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $Config);
    }

    if ($block->can('client') && defined $block->client) {
        # the servers' ports, as $::A ... in the client's Lua
        my $client = $block->client;
        my %port = (A => $A, B => $B, C => $C, D => $D);
        $client =~ s/\$::([ABCD])\b/$port{$1}/g;

        $block->set_value("config", $Proxy . <<"_EOC_");
    location /t {
        content_by_lua_block {
$Client
$client
        }
    }
_EOC_
    }
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: round robin with weights 3:1, the dead server tried once, then skipped for fail_timeout
--- client
            local got = sessions("/proxy/rr/ws", 40)
            ngx.say(show(got))
--- response_body eval
"$::A=30 $::B=10\n"
--- grep_error_log eval
qr/addrs: [^,\n]+, [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::C, 127.0.0.1:$::A status=101\n"
--- error_log eval
[
qr/\[warn\] .*ws_proxy: upstream server 127.0.0.1:$::C of "rr" failed \(failed to connect: connection refused\), trying the next one/,
qr/\[warn\] .*upstream server temporarily disabled/,
qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to websocket upstream/,
]



=== TEST 2: a server marked down is never tried
--- client
            ngx.say(show(sessions("/proxy/down/ws", 20)))
--- response_body eval
"$::A=10 $::B=10\n"
--- no_error_log eval
[qr/127\.0\.0\.1:$::C/, "[error]", "[warn]"]



=== TEST 3: backup: not used while the primary answers
--- client
            ngx.say(show(sessions("/proxy/backup/ws", 10)))
--- response_body eval
"$::A=10\n"
--- no_error_log eval
[qr/127\.0\.0\.1:$::D/, "[error]", "[warn]"]



=== TEST 4: backup: used when the primary fails; the primary is then skipped for fail_timeout
--- client
            ngx.say(show(sessions("/proxy/backup_dead/ws", 5)))
--- response_body eval
"$::D=5\n"
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::C, 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
"



=== TEST 5: hash $arg_room keeps a room on one server, and the rooms spread
--- client
            local servers = {}
            for i = 1, 8 do
                local got = sessions("/proxy/hashed/ws?room=r" .. i, 4)
                local n, srv = 0
                for k, v in pairs(got) do n = n + 1; srv = k end
                ngx.say("room r", i, ": ", n == 1 and got[srv] == 4
                                           and "one server" or show(got))
                servers[srv] = true
            end
            local n = 0
            for _ in pairs(servers) do n = n + 1 end
            ngx.say(n >= 2 and "rooms on several servers" or "one server")
--- response_body
room r1: one server
room r2: one server
room r3: one server
room r4: one server
room r5: one server
room r6: one server
room r7: one server
room r8: one server
rooms on several servers
--- no_error_log
[error]
[warn]



=== TEST 6: failover on 503 and 502 to the upgrade (connect()); failed servers skipped next time
--- client
            local q = "?p" .. $::A .. "=503&p" .. $::B .. "=502"
            ngx.say(show(sessions("/proxy/fo/st" .. q, 3)))
--- response_body eval
"$::D=3\n"
--- grep_error_log eval
qr/addrs: [^\n]+|chosen: [^,\s]+/
--- grep_error_log_out eval
"chosen: 127.0.0.1:$::D
addrs: 127.0.0.1:$::A, 127.0.0.1:$::B, 127.0.0.1:$::D status=101
chosen: 127.0.0.1:$::D
addrs: 127.0.0.1:$::D status=101
chosen: 127.0.0.1:$::D
addrs: 127.0.0.1:$::D status=101
"
--- error_log eval
[
qr/\[warn\] .*ws_proxy: upstream server 127.0.0.1:$::A of "fo" failed \([^)]*503[^)]*\), trying the next one/,
qr/\[warn\] .*ws_proxy: upstream server 127.0.0.1:$::B of "fo" failed \([^)]*502[^)]*\), trying the next one/,
]
--- no_error_log
[error]



=== TEST 7: failover on 503 and 502 with ws_proxy_pass
--- client
            local q = "?p" .. $::A .. "=503&p" .. $::B .. "=502"
            ngx.say(show(sessions("/pass/fo/st" .. q, 3)))
--- response_body eval
"$::D=3\n"
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::A, 127.0.0.1:$::B, 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::D status=101
"
--- no_error_log
[error]



=== TEST 8: a 403 is relayed, not retried, and does not count as a failure
--- client
            local q = "?p" .. $::A .. "=403"
            ngx.say(show(sessions("/proxy/fo/st" .. q, 3)))
            ngx.say(show(sessions("/pass/fo/st" .. q, 3)))
--- response_body eval
"$::B=1 $::D=1 403=1
$::B=1 $::D=1 403=1
"
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::A status=403
addrs: 127.0.0.1:$::B status=101
addrs: 127.0.0.1:$::D status=101
addrs: 127.0.0.1:$::A status=403
addrs: 127.0.0.1:$::B status=101
addrs: 127.0.0.1:$::D status=101
"
--- no_error_log
[warn]
[error]



=== TEST 9: ws_proxy_next_upstream_tries 1: the 503 is relayed
--- client
            local q = "?p" .. $::A .. "=503"
            ngx.say(show(sessions("/once/fo/st" .. q, 1)))
--- response_body
503=1
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::A status=503
"
--- no_error_log
trying the next one



=== TEST 10: no response within ws_proxy_read_timeout: the next server
--- client
            local q = "?hold" .. $::A .. "=1"
            ngx.say(show(sessions("/slow/fo/ws" .. q, 1)))
--- response_body eval
"$::B=1\n"
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::A, 127.0.0.1:$::B status=101
"
--- error_log eval
qr/\[warn\] .*upstream server 127.0.0.1:$::A of "fo" failed \(failed to receive response header: timeout\)/



=== TEST 11: every server dead: connect() fails, ws_proxy_pass answers 502, then no live upstreams
--- client
            ngx.say(session("/proxy/dead/ws"))
            ngx.say(session("/pass/dead/ws"))
            ngx.say(session("/pass/dead/ws"))
--- response_body
200
502
502
--- grep_error_log eval
qr/(?<=\d: )connect: [^,]+|ws_proxy_pass: [^,]+/
--- grep_error_log_out
connect: failed connecting to upstream: failed to connect: connection refused
ws_proxy_pass: failed to connect: no live upstreams
ws_proxy_pass: failed to connect: no live upstreams
--- error_log
no live upstreams



=== TEST 12: least_conn counts a session until it ends
--- client
            local held = assert(ws.client("/proxy/lc/ws"))
            local first = held:recv_frame().payload
            local a = session("/proxy/lc/ws")
            local b = session("/proxy/lc/ws")
            held:send_close(1000, "done")
            held:recv_frame()
            ngx.say(first ~= "srv:" .. a and a == b and "the other one twice"
                    or first .. " " .. a .. " " .. b)
--- response_body
the other one twice
--- no_error_log
[error]
[warn]



=== TEST 13: ws_proxy_next_upstream_timeout: no next server after it, the timeout is 504
--- client
            local q = "?hold" .. $::A .. "=1"
            ngx.say(session("/slowonce/fo/ws" .. q))
--- response_body
504
--- grep_error_log eval
qr/addrs: [^\n]+/
--- grep_error_log_out eval
"addrs: 127.0.0.1:$::A status=504
"
--- no_error_log
trying the next one



=== TEST 14: a session after connect_client(): its upstream is not retried
--- config
    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect_client())
            local ok, err = wp:connect_upstream(ngx.var.arg_u)
            ngx.log(ngx.INFO, "connect_upstream: ", ok, " ", err)
        }
    }

    location /t {
        content_by_lua_block {
            local ws = require "wstest"
            local c = assert(ws.client("/proxy?u=ws://fo/st?p$TEST_NGINX_GROUP_PORT=503"))
            c:close()
        }
    }
--- response_body
--- wait: 0.1
--- error_log
connect_upstream: nil bad HTTP response status line: HTTP/1.1 503 Service Temporarily Unavailable
--- no_error_log
trying the next one



=== TEST 15: a keepalive group: a connection proxy_pass left in its cache carries the upgrade
--- client
            ngx.print(ngx.location.capture("/http").body)
            ngx.say(session("/proxy/ka/ws"))
            ngx.say(session("/pass/ka/ws"))
--- response_body eval
"plain
$::A
$::A
"
--- error_log
upstream request 2 on its connection
upstream request 1 on its connection
--- no_error_log
[error]
[warn]
