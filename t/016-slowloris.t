# vim:set ts=4 sts=4 sw=4 et ft=:

# Slow peers during the opening handshake: a client that drips its upgrade
# request is cut off by nginx's client_header_timeout while a normal
# session goes on; an upstream that drips its 101 head is cut off by the
# module's handshake read timeout (a deadline for the whole head, not for
# each byte), and connect() says so.

use lib '.';
use t::WsProxy;

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: a client dripping its upgrade request is cut off, a session goes on
--- config
    client_header_timeout 1s;

    location /proxy {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            assert(wp:connect(proxy._tests.echo .. "?repeat=1"))
            local ok, err = wp:execute()
            ngx.log(ngx.INFO, "execute: ", ok, " ", err)
        }
    }

    location /t {
        # the probe reads of the slow client time out on purpose
        lua_socket_log_errors off;

        content_by_lua_block {
            local ws = require "wstest"

            local req = "GET /proxy HTTP/1.1\r\nHost: localhost\r\n"
                        .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        .. "Sec-WebSocket-Version: 13\r\n\r\n"

            -- one byte every 200 ms; a 200 ms read between the bytes
            -- notices when nginx closes the connection
            local slow = ngx.thread.spawn(function()
                local sock = ngx.socket.tcp()
                assert(sock:connect("127.0.0.1", ngx.var.server_port))
                sock:settimeout(200)
                local start = ngx.now()

                for i = 1, #req do
                    local ok, err = sock:send(req:sub(i, i))
                    if not ok then
                        return i - 1, ngx.now() - start, err
                    end

                    local data, err = sock:receive(1)
                    if data then
                        return i, ngx.now() - start, "got " .. data
                    end
                    if err ~= "timeout" then
                        return i, ngx.now() - start, err
                    end
                end

                return #req, ngx.now() - start, "never cut off"
            end)

            -- meanwhile a normal session through the proxy, frame after
            -- frame for longer than the slow client lasts
            local c = assert(ws.client("/proxy"))
            local echoed = 0
            for i = 1, 15 do
                assert(c:send_text("frame " .. i))
                local f = assert(c:recv_frame())
                if f.payload == "frame " .. i then
                    echoed = echoed + 1
                end
                ngx.sleep(0.1)
            end
            c:send_close(1000, "done")
            local f = c:recv_frame()

            local _, sent, elapsed, err = ngx.thread.wait(slow)
            ngx.say("slow client: ", err, " after ", sent < #req
                    and "part of its request" or "all of it",
                    ", in time: ", elapsed > 0.8 and elapsed < 2.5)
            ngx.say("session: ", echoed, " frames echoed, close ",
                    f and f.code)
        }
    }
--- timeout: 10
--- response_body
slow client: closed after part of its request, in time: true
session: 15 frames echoed, close 1000
--- error_log
client timed out (110: Connection timed out) while reading client request
execute: true nil
--- no_error_log
[error]



=== TEST 2: an upstream dripping its 101 head: connect() times out
--- config
    location /drip {
        content_by_lua_block {
            local key = ngx.var.http_sec_websocket_key
            local accept = ngx.encode_base64(ngx.sha1_bin(
                key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
            local head = "HTTP/1.1 101 Switching Protocols\r\n"
                         .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         .. "Sec-WebSocket-Accept: " .. accept .. "\r\n\r\n"

            local sock = assert(ngx.req.socket(true))

            -- one byte every 100 ms: each read is in time, the head is not
            for i = 1, #head do
                if not sock:send(head:sub(i, i)) then
                    ngx.log(ngx.INFO, "drip stopped after ", i - 1,
                            " bytes")
                    return
                end
                ngx.sleep(0.1)
            end
        }
    }

    location /t {
        content_by_lua_block {
            local proxy = require "resty.websocket.proxy"
            local wp = assert(proxy.new())
            local start = ngx.now()
            local ok, err = wp:connect("ws://127.0.0.1:" .. ngx.var.server_port
                                       .. "/drip", { read_timeout = 1000 })
            local elapsed = ngx.now() - start
            ngx.say(ok, " ", err)
            ngx.say("in time: ", elapsed > 0.9 and elapsed < 2)
            ngx.sleep(0.3)
        }
    }
--- more_headers
Upgrade: websocket
Connection: close, Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- timeout: 10
--- response_body
nil failed connecting to upstream: failed to receive response header: timeout
in time: true
--- error_log
upstream timed out while reading the handshake response
drip stopped after
