-- Test helpers: a raw WebSocket peer on plain cosockets, independent of the
-- module's own codec, able to write malformed frames on purpose.
--
--   local ws = require "wstest"
--   local c = assert(ws.client("/proxy"))            -- raw client
--   c:send_frame{ opcode = 1, payload = "hi" }       -- masked by default
--   local f = c:recv_frame()  -- { fin, rsv, opcode, masked, payload, code,
--                             --   reason }
--   local s = assert(ws.server())                    -- raw upstream (101)

local bit = require "bit"

local band, bor, bxor = bit.band, bit.bor, bit.bxor
local rshift, lshift = bit.rshift, bit.lshift
local char, byte, concat = string.char, string.byte, table.concat
local rep = string.rep
local floor = math.floor

local _M = {
    -- the suite's slowness factor (TEST_NGINX_SLOW_FACTOR, set by
    -- t/WsProxy.pm): every timeout and pause of a test peer grows by it
    slow = 1,
}


-- a wait of ms milliseconds, as long as the machine needs
function _M.ms(ms)
    return ms * _M.slow
end


-- a pause of s seconds that lets the other side catch up
function _M.sleep(s)
    return ngx.sleep(s * _M.slow)
end

local mt = { __index = _M }


local function mask_payload(payload, key)
    local out = {}
    local k = { byte(key, 1, 4) }

    for i = 1, #payload do
        out[i] = char(bxor(byte(payload, i), k[(i - 1) % 4 + 1]))
    end

    return concat(out)
end

_M.mask_payload = mask_payload


-- frame{ fin = true, rsv = 0, opcode = 1, payload = "", mask = true|false|
--        "four", len = override length, len_bytes = 0|2|8 to force }
function _M.build_frame(f)
    local payload = f.payload or ""
    local fin = f.fin == nil and true or f.fin
    local rsv = f.rsv or 0
    local opcode = f.opcode or 0x1
    local len = f.len or #payload

    local b1 = bor(fin and 0x80 or 0, lshift(rsv, 4), opcode)

    local masked = f.mask
    if masked == nil then
        masked = true
    end

    local key
    if masked then
        key = type(masked) == "string" and masked
              or char(math.random(0, 255), math.random(0, 255),
                      math.random(0, 255), math.random(0, 255))
    end

    local mbit = masked and 0x80 or 0
    local hdr
    local lb = f.len_bytes

    if (lb == nil and len <= 125) or lb == 0 then
        hdr = char(b1, bor(mbit, len))

    elseif (lb == nil and len <= 65535) or lb == 2 then
        hdr = char(b1, bor(mbit, 126), band(rshift(len, 8), 0xff),
                   band(len, 0xff))

    else
        local hi = floor(len / 4294967296)
        local lo = len % 4294967296
        if f.len_msb then
            hi = bor(hi, 0x80000000)
        end

        hdr = char(b1, bor(mbit, 127),
                   band(rshift(hi, 24), 0xff), band(rshift(hi, 16), 0xff),
                   band(rshift(hi, 8), 0xff), band(hi, 0xff),
                   band(rshift(lo, 24), 0xff), band(rshift(lo, 16), 0xff),
                   band(rshift(lo, 8), 0xff), band(lo, 0xff))
    end

    if masked then
        return hdr .. key .. mask_payload(payload, key)
    end

    return hdr .. payload
end


function _M.close_payload(code, reason)
    if not code then
        return ""
    end

    return char(band(rshift(code, 8), 0xff), band(code, 0xff))
           .. (reason or "")
end


local function recv_frame(sock)
    local h, err = sock:receive(2)
    if not h then
        return nil, err
    end

    local b1, b2 = byte(h, 1, 2)
    local f = {
        fin = band(b1, 0x80) ~= 0,
        rsv = rshift(band(b1, 0x70), 4),
        opcode = band(b1, 0x0f),
        masked = band(b2, 0x80) ~= 0,
    }

    local len = band(b2, 0x7f)

    if len == 126 then
        local e = assert(sock:receive(2))
        len = byte(e, 1) * 256 + byte(e, 2)

    elseif len == 127 then
        local e = assert(sock:receive(8))
        len = 0
        for i = 1, 8 do
            len = len * 256 + byte(e, i)
        end
    end

    local key
    if f.masked then
        key = assert(sock:receive(4))
    end

    local payload = ""
    if len > 0 then
        payload, err = sock:receive(len)
        if not payload then
            return nil, err
        end
    end

    if key then
        payload = mask_payload(payload, key)
    end

    f.payload = payload
    f.len = len

    if f.opcode == 0x8 and #payload >= 2 then
        f.code = byte(payload, 1) * 256 + byte(payload, 2)
        f.reason = payload:sub(3)
    end

    return f
end

_M.recv_frame_from = recv_frame


-- a raw client on the proxy location of this server
function _M.client(path, opts)
    opts = opts or {}

    local sock = ngx.socket.tcp()
    sock:settimeout(_M.ms(opts.timeout or 3000))

    local ok, err = sock:connect("127.0.0.1", opts.port or ngx.var.server_port)
    if not ok then
        return nil, err
    end

    if opts.ssl then
        ok, err = sock:sslhandshake(nil, opts.server_name or "localhost",
                                    false)
        if not ok then
            return nil, err
        end
    end

    local req = {
        "GET ", path, " HTTP/1.1\r\n",
        "Host: localhost\r\n",
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Version: 13\r\n",
    }

    for _, h in ipairs(opts.headers or {}) do
        req[#req + 1] = h .. "\r\n"
    end

    req[#req + 1] = "\r\n"
    req[#req + 1] = opts.pipelined or ""

    ok, err = sock:send(concat(req))
    if not ok then
        return nil, err
    end

    local line
    line, err = sock:receive("*l")
    if not line then
        return nil, err
    end

    local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
    local headers = {}

    while true do
        local l = sock:receive("*l")
        if not l or l == "" then
            break
        end

        local k, v = l:match("^([^:]+):%s*(.*)$")
        if k then
            headers[k:lower()] = v
        end
    end

    local self = setmetatable({ sock = sock, status = status,
                                status_line = line, headers = headers,
                                masked = opts.mask ~= false }, mt)

    if status ~= 101 then
        return nil, "status " .. tostring(status), self
    end

    return self
end


-- the upstream end: completes the handshake on this request's socket
function _M.server(opts)
    opts = opts or {}

    local key = ngx.var.http_sec_websocket_key
    local sha1 = ngx.sha1_bin(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")

    local sock, err = ngx.req.socket(true)
    if not sock then
        return nil, err
    end

    sock:settimeout(_M.ms(opts.timeout or 3000))

    local resp = {
        "HTTP/1.1 101 Switching Protocols\r\n",
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ",
        opts.accept or ngx.encode_base64(sha1), "\r\n",
    }

    for _, h in ipairs(opts.headers or {}) do
        resp[#resp + 1] = h .. "\r\n"
    end

    resp[#resp + 1] = "\r\n"

    local ok
    ok, err = sock:send(concat(resp))
    if not ok then
        return nil, err
    end

    return setmetatable({ sock = sock, masked = false }, mt)
end


function _M:send_raw(data)
    return self.sock:send(data)
end


function _M:send_frame(f)
    if f.mask == nil then
        f.mask = self.masked
    end

    return self.sock:send(_M.build_frame(f))
end


function _M:send_text(s)
    return self:send_frame{ opcode = 0x1, payload = s }
end


function _M:send_close(code, reason)
    return self:send_frame{ opcode = 0x8,
                            payload = _M.close_payload(code, reason) }
end


function _M:recv_frame()
    return recv_frame(self.sock)
end


-- "text:hi", "close:1000:bye", ...: a short string for response bodies
function _M.describe(f, err)
    if not f then
        return "error: " .. tostring(err)
    end

    local names = { [0] = "continuation", "text", "binary", [8] = "close",
                    [9] = "ping", [10] = "pong" }
    local name = names[f.opcode] or ("opcode " .. f.opcode)

    if f.opcode == 0x8 then
        return name .. ":" .. tostring(f.code) .. ":" .. (f.reason or "")
    end

    local p = f.payload
    if #p > 40 then
        p = #p .. " bytes"
    end

    return name .. ":" .. p .. (f.fin and "" or " (fin=0)")
           .. (f.masked and " (masked)" or "")
end


-- the bytes of a file (the payloads t/WsRaw.pm writes from Perl)
function _M.file(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    return data
end


function _M.hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", byte(c)) end))
end


function _M:close()
    return self.sock:close()
end


-- n binary frames of `size` bytes, frame i filled with byte i % 256, all
-- built first and written at once (backpressure tests)
function _M:send_numbered(n, size)
    local frames = {}
    for i = 1, n do
        frames[i] = _M.build_frame{ opcode = 0x2, mask = self.masked,
                                    payload = rep(char(i % 256), size) }
    end

    return self.sock:send(concat(frames))
end


-- reads what send_numbered() sent until the peer's close; after n frames,
-- answers with a text frame "<n> frames, <bytes> bytes, <bad> bad"
function _M:check_numbered(n)
    local got, bytes, bad = 0, 0, 0

    while true do
        local f, err = self:recv_frame()
        if not f then
            return nil, err
        end

        if f.opcode == 0x8 then
            return self:send_close(1000)
        end

        got = got + 1
        bytes = bytes + #f.payload
        if f.payload ~= rep(char(got % 256), #f.payload) then
            bad = bad + 1
        end

        if got == n then
            self:send_text(got .. " frames, " .. bytes .. " bytes, " .. bad
                           .. " bad")
        end
    end
end


return _M
