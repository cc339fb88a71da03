-- Copyright (C) ngx_http_ws_proxy_module authors
--
-- resty.websocket.proxy: a drop-in for Kong's lua-resty-websocket-proxy whose
-- data plane is the ngx_http_ws_proxy_module C module.  This file only checks
-- arguments, declares the module's FFI functions and runs the on_frame hook;
-- frames never go through Lua unless a hook (or debug) asks to see them.


local ffi = require "ffi"
local base = require "resty.core.base"


local C = ffi.C
local ffi_str = ffi.string
local ffi_new = ffi.new
local get_request = base.get_request
local get_string_buf = base.get_string_buf
local get_size_ptr = base.get_size_ptr
local co_yield = coroutine._yield
local type = type
local error = error
local pcall = pcall
local tostring = tostring
local setmetatable = setmetatable
local concat = table.concat
local fmt = string.format
local gsub = string.gsub
local sub = string.sub
local byte = string.byte
local find = string.find
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local DEBUG = ngx.DEBUG
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait


ffi.cdef[[
typedef struct {
    const unsigned char        *data;
    size_t                      len;
    int                         opcode;
    int                         fin;
    int                         code;
    int                         ready;
    uint32_t                    seq;
} ngx_http_ws_proxy_slot_t;

typedef struct {
    const unsigned char        *data;
    size_t                      len;
} ngx_http_ws_proxy_lua_log_t;

typedef struct {
    double                      client_max_frame_size;
    double                      upstream_max_frame_size;
    double                      max_payload;
    int                         client_max_fragments;
    int                         upstream_max_fragments;
    int                         recv_timeout;
    int                         send_timeout;
    int                         close_timeout;
    int                         idle_timeout;
    int                         ping_interval;
    int                         ping_timeout;
    int                         session_timeout;
    int                         hook;
    int                         aggregate;
    int                         debug;
    int                         drain_time;
    int                         flight_recorder;
    int                         tap_payloads;
} ngx_http_ws_proxy_ffi_opts_t;

typedef struct {
    double                      seq;
    double                      epoch;
    double                      start;
    double                      age;
    double                      frames[2];
    double                      bytes[2];
    int                         worker;
    int                         state;
    int                         ended_by;
    int                         close_code[2];
    int                         deflate;
    int                         hook;
    int                         recorder;
    int                         taps;
    int                         key_len;
    const unsigned char        *key;
    int                         location_len;
    int                         client_len;
    int                         upstream_len;
    unsigned char               location[64];
    unsigned char               client[56];
    unsigned char               upstream[56];
} ngx_http_ws_proxy_ffi_session_t;

int ngx_http_ws_proxy_ffi_sessions(const unsigned char *args, size_t len,
    ngx_http_ws_proxy_ffi_session_t *out, int n, int *total, int *unlisted);
int ngx_http_ws_proxy_ffi_close_session(const unsigned char *id, size_t len,
    int code, const unsigned char *reason, size_t reason_len);

typedef struct {
    const unsigned char        *uri;
    size_t                      uri_len;
    const unsigned char        *headers;
    size_t                      headers_len;
    const unsigned char        *server_name;
    size_t                      server_name_len;
    int                         connect_timeout;
    int                         send_timeout;
    int                         read_timeout;
    int                         ssl_verify;
    void                       *client_cert;
    void                       *client_priv_key;
    const unsigned char        *host;
    size_t                      host_len;
    const unsigned char        *key;
    size_t                      key_len;
    const unsigned char        *protocols;
    size_t                      protocols_len;
    int                         forward_protocols;
    int                         handshake_buffer_size;
} ngx_http_ws_proxy_ffi_connect_t;

int ngx_http_ws_proxy_ffi_new(ngx_http_request_t *r, int hook, uint64_t *id,
    unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_set_opts(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_opts_t *o, unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_connect(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_connect_t *o, unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_connect_result(ngx_http_request_t *r, uint64_t id,
    const unsigned char **resp, size_t *resp_len, unsigned char *err,
    size_t *errlen);
int ngx_http_ws_proxy_ffi_client_check(ngx_http_request_t *r, uint64_t id,
    unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_client_handshake(ngx_http_request_t *r,
    uint64_t id, unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_execute(ngx_http_request_t *r, uint64_t id,
    unsigned char *err, size_t *errlen);
ngx_http_ws_proxy_slot_t *ngx_http_ws_proxy_ffi_slot(ngx_http_request_t *r,
    uint64_t id, int dir);
ngx_http_ws_proxy_lua_log_t *ngx_http_ws_proxy_ffi_logs(ngx_http_request_t *r,
    uint64_t id);
int ngx_http_ws_proxy_ffi_wait(ngx_http_request_t *r, uint64_t id, int dir,
    unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_verdict(ngx_http_request_t *r, uint64_t id,
    int dir, uint32_t seq, int verdict, const unsigned char *data, size_t len,
    int code, unsigned char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_abort(ngx_http_request_t *r, uint64_t id, int code,
    const unsigned char *reason, size_t len);
int ngx_http_ws_proxy_ffi_result(ngx_http_request_t *r, uint64_t id,
    unsigned char *err, size_t *errlen);

typedef struct {
    double                      frames[2];
    double                      bytes[2];
    double                      messages[2];
    int                         close_code[2];
    int                         state;
    int                         closed_by;
    int                         ended_by;
    double                      duration;
    const unsigned char        *upstream_addr;
    size_t                      upstream_addr_len;
    double                      zbytes[2];
    double                      zplain[2];
} ngx_http_ws_proxy_ffi_stats_t;

int ngx_http_ws_proxy_ffi_stats(uint64_t id,
    ngx_http_ws_proxy_ffi_stats_t *st);
int ngx_http_ws_proxy_ffi_close(uint64_t id, int client_code,
    const unsigned char *client_reason, size_t client_len, int upstream_code,
    const unsigned char *upstream_reason, size_t upstream_len);
int ngx_http_ws_proxy_ffi_send_frame(uint64_t id, int dir, int opcode,
    const unsigned char *data, size_t len);
int ngx_http_ws_proxy_ffi_set_deadline(uint64_t id, double ms, int code,
    const unsigned char *reason, size_t len);
int ngx_http_ws_proxy_ffi_set_limits(uint64_t id, int dir,
    double max_frame_size, int max_fragments);
int ngx_http_ws_proxy_ffi_set_rate(uint64_t id, int dirs, double rate,
    double burst, int close, const unsigned char *zone, size_t zone_len,
    const unsigned char *key, size_t key_len, unsigned char *err,
    size_t *errlen);
int ngx_http_ws_proxy_ffi_relay_response(ngx_http_request_t *r, uint64_t id);

typedef struct {
    const unsigned char        *zone;
    size_t                      zone_len;
    const unsigned char        *key;
    size_t                      key_len;
    int                         n;
} ngx_http_ws_proxy_ffi_limit_t;

int ngx_http_ws_proxy_ffi_limit(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_limit_t *l, int n, unsigned char *err,
    size_t *errlen);
int ngx_http_ws_proxy_ffi_abi(void);
int ngx_http_ws_proxy_ffi_deflate(ngx_http_request_t *r, uint64_t id,
    int sides, int *takeover, int *bits, int level, int mem_level);

uint32_t ngx_wsp_utf8_validate(uint32_t state, const unsigned char *p,
    size_t n);
]]


-- The declarations above are the C module's ABI: a .so built from another
-- version would be called with other arguments and crash the worker, so a
-- mismatch stops the require instead.
local FFI_ABI = 14

do
    local ok, abi = pcall(function() return C.ngx_http_ws_proxy_ffi_abi() end)
    if not ok then
        error("resty.websocket.proxy: ngx_http_ws_proxy_module is not loaded "
              .. "or older than this library (load_module it after "
              .. "ngx_http_lua_module.so)", 2)
    end

    if abi ~= FFI_ABI then
        error("resty.websocket.proxy: ngx_http_ws_proxy_module has FFI ABI "
              .. abi .. ", this library needs " .. FFI_ABI
              .. ": load the module built with it", 2)
    end
end


local NGX_OK = 0
local NGX_ERROR = -1
local NGX_AGAIN = -2
local NGX_DONE = -4
local NGX_DECLINED = -5

local VERDICT_FORWARD = 0
local VERDICT_REWRITE = 1
local VERDICT_DROP = 2

local DIR_CLIENT = 0
local DIR_UPSTREAM = 1
local DIR_MAIN = -1

local ERR_BUF_SIZE = 256

local _DEBUG_PAYLOAD_MAX_LEN = 24

local _STATES = {
    INIT = 1,
    ESTABLISHED = 2,
    CLOSING = 3,
}

local _OPCODE2TYP = {
    [0x0] = "continuation",
    [0x1] = "text",
    [0x2] = "binary",
    [0x8] = "close",
    [0x9] = "ping",
    [0xa] = "pong",
}

local _ROLES = { [DIR_CLIENT] = "client", [DIR_UPSTREAM] = "upstream" }

-- the options of new() a proxy object keeps
local _OPTIONS = {
    "on_frame", "recv_timeout", "send_timeout", "close_timeout",
    "client_max_frame_size", "client_max_fragments",
    "upstream_max_frame_size", "upstream_max_fragments",
    "max_payload_size", "aggregate_fragments", "debug",
    "idle_timeout", "ping_interval", "ping_timeout", "session_timeout",
    "drain_time", "deflate", "deflate_context_takeover",
    "deflate_window_bits", "deflate_level", "deflate_mem_level",
    "client_deflate_context_takeover", "upstream_deflate_context_takeover",
    "client_deflate_window_bits", "upstream_deflate_window_bits",
    "handshake_buffer_size", "limit_sessions", "flight_recorder",
    "tap_payloads", "limit_messages",
}


-- the deflate option: the connections that negotiate permessage-deflate
-- (NGX_WSP_RUN_DIR() bits of the C module)
local _DEFLATE_SIDES = {
    [true] = 3, [false] = 0, client = 1, upstream = 2,
}


-- scratch cdata: filled by C and read before any yield, so one per worker
local opts_buf = ffi_new("ngx_http_ws_proxy_ffi_opts_t[1]")
local conn_buf = ffi_new("ngx_http_ws_proxy_ffi_connect_t[1]")
local id_buf = ffi_new("uint64_t[1]")
local resp_buf = ffi_new("const unsigned char *[1]")
local resp_len = ffi_new("size_t[1]")
local stats_buf = ffi_new("ngx_http_ws_proxy_ffi_stats_t[1]")
local deflate_takeover = ffi_new("int[2]")
local deflate_bits = ffi_new("int[2]")
local _SIDES = { "client", "upstream" }   -- NGX_WSP_DIR_* + 1
local _TAKEOVER_OPTIONS = {
    "deflate_context_takeover", "client_deflate_context_takeover",
    "upstream_deflate_context_takeover",
}

local _TYP2OPCODE = {
    text = 0x1,
    binary = 0x2,
    ping = 0x9,
    pong = 0xa,
}

local _SESSION_STATES = { [0] = "new", "connecting", "connected", "running",
                          "done" }
local _CLOSED_BY = { [0] = nil, "client", "upstream", "proxy" }

-- why a session ended, by NGX_WSP_END_* (ngx_http_ws_proxy_live.c)
local _ENDED_BY = {
    [0] = nil, "client_close", "upstream_close", "proxy_close", "idle",
    "session_timeout", "ping_timeout", "drain", "violation", "limit",
    "send_timeout", "hook_error", "reset",
}

-- the C module's UTF-8 validator (src/protocol/ngx_wsp_frame.c), the one
-- the pump checks text frames and close reasons with
local function utf8_valid(s)
    return C.ngx_wsp_utf8_validate(0, s, #s) == 0
end


local function valid_close_code(code)
    return type(code) == "number"
           and ((code >= 1000 and code <= 1003)
                or (code >= 1007 and code <= 1014)
                or (code >= 3000 and code <= 4999))
end


local _M = {
    _VERSION = "0.1.0",
}

local _mt = { __index = _M }


-- Numbers that C stores: sizes as uint64_t (exact up to 2^53), counts and
-- milliseconds as int.  NaN fails every comparison, so each check is
-- written as "not (v >= min)".
local MAX_SIZE = 2 ^ 53
local MAX_INT = 2 ^ 31 - 1

-- the smallest handshake buffer, as ws_proxy_handshake_buffer_size's
local HS_BUFFER_MIN = 1024


-- nil when v is nil or a number in [min, max], else the message
local function bad_number(name, v, min, max)
    if v == nil then
        return nil
    end

    if type(v) ~= "number" or not (v >= min) then
        return name .. " must be a number >= " .. min
    end

    if v > max then
        return name .. " must be a number <= " .. fmt("%.0f", max)
    end

    return nil
end


local function check_number(opts, name, min, max)
    local err = bad_number("opts." .. name, opts[name], min, max)
    if err then
        error(err, 3)
    end
end


local function check_integer(opts, name, min, max)
    local v = opts[name]
    if v ~= nil and (type(v) ~= "number" or v % 1 ~= 0 or v < min
                     or v > max)
    then
        error("opts." .. name .. " must be an integer from " .. min .. " to "
              .. max, 3)
    end
end


-- the limit_sessions option: false (no cap, whatever the directives say),
-- one cap { zone = "name", n = 3, key = "..." } or a list of them; nil
-- when it is valid, else the message
local LIMIT_MAX = 65535

local function check_limit_sessions(v)
    if v == false then
        return nil
    end

    if type(v) ~= "table" then
        return "opts.limit_sessions must be false, a table { zone = ..., "
               .. "n = ... } or a list of them"
    end

    local list = v.zone ~= nil and { v } or v

    if #list == 0 then
        return "opts.limit_sessions must be false, a table { zone = ..., "
               .. "n = ... } or a list of them"
    end

    for i = 1, #list do
        local l = list[i]

        if type(l) ~= "table" then
            return "opts.limit_sessions must be false, a table { zone = "
                   .. "..., n = ... } or a list of them"
        end

        if type(l.zone) ~= "string" or l.zone == "" then
            return "opts.limit_sessions.zone must be a string (the name of "
                   .. "a ws_proxy_limit_session_zone)"
        end

        if type(l.n) ~= "number" or l.n % 1 ~= 0 or l.n < 1
           or l.n > LIMIT_MAX
        then
            return "opts.limit_sessions.n must be an integer from 1 to "
                   .. LIMIT_MAX
        end

        if l.key ~= nil and type(l.key) ~= "string" then
            return "opts.limit_sessions.key must be a string"
        end
    end

    return nil
end


-- the limit_messages option and set_rate(): false (no message rate,
-- whatever the directives say), a rate in messages per second, or a table
-- { rate = 10, burst = 5, from = "client", action = "delay" } or
-- { zone = "name", key = "...", ... }; nil when it is valid, else the
-- message
local _RATE_FROM = { client = 1, upstream = 2, both = 3 }
local _RATE_ACTIONS = { delay = 0, close = 1 }
local RATE_MAX = 1000000

local function check_rate(v, what)
    if v == false then
        return nil
    end

    if type(v) == "number" then
        v = { rate = v }
    end

    if type(v) ~= "table" then
        return what .. " must be false, a number or a table { rate = ..., "
               .. "burst = ..., from = ..., action = ... }"
    end

    if v.zone ~= nil and (type(v.zone) ~= "string" or v.zone == "") then
        return what .. ".zone must be a string (the name of a "
               .. "ws_proxy_limit_message_zone)"
    end

    if v.zone == nil or v.rate ~= nil then
        if v.zone ~= nil then
            return what .. " takes a zone or a rate, not both"
        end

        if type(v.rate) ~= "number" or not (v.rate > 0)
           or v.rate > RATE_MAX
        then
            return what .. ".rate must be a number of messages per second, "
                   .. "> 0 and <= " .. RATE_MAX
        end
    end

    if v.burst ~= nil and (type(v.burst) ~= "number" or not (v.burst >= 0)
                           or v.burst > RATE_MAX)
    then
        return what .. ".burst must be a number >= 0 and <= " .. RATE_MAX
    end

    if v.from ~= nil and _RATE_FROM[v.from] == nil then
        return what .. '.from must be "client", "upstream" or "both"'
    end

    if v.action ~= nil and _RATE_ACTIONS[v.action] == nil then
        return what .. '.action must be "delay" or "close"'
    end

    if v.key ~= nil and type(v.key) ~= "string" then
        return what .. ".key must be a string"
    end

    return nil
end


-- a checked rate to the session: NGX_OK, NGX_DECLINED (no session any
-- more) or NGX_ERROR with the message
local function apply_rate(sid, v)
    local dirs, rate, burst, close, zone, key = 3, 0, 0, 0, nil, nil

    if type(v) == "number" then
        v = { rate = v }
    end

    if v then
        dirs = _RATE_FROM[v.from or "client"]
        rate = v.rate or 0
        burst = v.burst or 0
        close = _RATE_ACTIONS[v.action or "delay"]
        zone = v.zone
        key = v.key
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    local rc = C.ngx_http_ws_proxy_ffi_set_rate(sid, dirs, rate, burst, close,
                                                zone, zone and #zone or 0,
                                                key, key and #key or 0,
                                                err, errlen)
    if rc == NGX_ERROR then
        return rc, ffi_str(err, errlen[0])
    end

    return rc
end


function _M.new(opts)
    if opts == nil then
        opts = {}
    end

    if type(opts) ~= "table" then
        error("opts must be a table", 2)
    end

    if opts.on_frame ~= nil and type(opts.on_frame) ~= "function" then
        error("opts.on_frame must be a function", 2)
    end

    if opts.recv_timeout ~= nil and type(opts.recv_timeout) ~= "number" then
        error("opts.recv_timeout must be a number", 2)
    end

    -- 0 is refused where it would mean nothing (a timer of 0 ms, a limit of
    -- 0 bytes), as the matching directives refuse it
    check_number(opts, "recv_timeout", 1, MAX_INT)
    check_number(opts, "send_timeout", 1, MAX_INT)
    check_number(opts, "close_timeout", 1, MAX_INT)
    check_number(opts, "idle_timeout", 1, MAX_INT)
    check_number(opts, "ping_interval", 1, MAX_INT)
    check_number(opts, "ping_timeout", 1, MAX_INT)
    check_number(opts, "session_timeout", 1, MAX_INT)
    check_number(opts, "drain_time", 1, MAX_INT)
    check_number(opts, "client_max_frame_size", 1, MAX_SIZE)
    check_number(opts, "client_max_fragments", 1, MAX_INT)
    check_number(opts, "upstream_max_frame_size", 1, MAX_SIZE)
    check_number(opts, "upstream_max_fragments", 1, MAX_INT)
    check_number(opts, "max_payload_size", 1, MAX_SIZE)
    check_number(opts, "handshake_buffer_size", HS_BUFFER_MIN, MAX_INT)
    check_integer(opts, "flight_recorder", 0, 1024)
    check_integer(opts, "tap_payloads", 0, 4096)

    if opts.limit_sessions ~= nil then
        local err = check_limit_sessions(opts.limit_sessions)
        if err then
            error(err, 2)
        end
    end

    if opts.limit_messages ~= nil then
        local err = check_rate(opts.limit_messages, "opts.limit_messages")
        if err then
            error(err, 2)
        end
    end

    if opts.deflate ~= nil and _DEFLATE_SIDES[opts.deflate] == nil then
        error('opts.deflate must be a boolean, "client" or "upstream"', 2)
    end

    for _, name in ipairs(_TAKEOVER_OPTIONS) do
        if opts[name] ~= nil and type(opts[name]) ~= "boolean" then
            error("opts." .. name .. " must be a boolean", 2)
        end
    end

    check_integer(opts, "deflate_window_bits", 8, 15)
    check_integer(opts, "client_deflate_window_bits", 8, 15)
    check_integer(opts, "upstream_deflate_window_bits", 8, 15)
    check_integer(opts, "deflate_level", 0, 9)
    check_integer(opts, "deflate_mem_level", 1, 9)

    -- only the options given take a slot: an idle session keeps its object
    -- for as long as it lives, and most set two or three options
    local self = {
        client_state = _STATES.INIT,
        upstream_state = _STATES.INIT,
    }

    for i = 1, #_OPTIONS do
        local name = _OPTIONS[i]
        local v = opts[name]
        if v ~= nil then
            self[name] = v
        end
    end

    return setmetatable(self, _mt)
end


-- A peer's bytes in a log line (a URI, a close reason, an error string):
-- every byte below 0x20, and 0x7f, as \xNN, so that no peer can end the
-- line and write one of its own into error.log (the C side does the same
-- in ngx_http_ws_proxy_log_escape(); escaping twice changes nothing)
local _LOG_ESCAPES = { ["\127"] = "\\x7f" }
for c = 0, 31 do
    _LOG_ESCAPES[string.char(c)] = fmt("\\x%02x", c)
end

local function log_escape(s)
    return (gsub(s, "[%z\1-\31\127]", _LOG_ESCAPES))
end


function _M:dd(...)
    if self.debug then
        return log(DEBUG, ...)
    end
end


-- the C session of the current request, created on first use
local function session(self)
    local r = get_request()
    if not r then
        error("no request found", 3)
    end

    local sid = self.sid
    if sid then
        return r, sid
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    local hook = (self.on_frame ~= nil or self.debug) and 1 or 0

    if C.ngx_http_ws_proxy_ffi_new(r, hook, id_buf, err, errlen) ~= NGX_OK
    then
        return nil, ffi_str(err, errlen[0])
    end

    -- a per-worker number that is never reused (exact in a double up to
    -- 2^53): every call into C checks it, so a handle kept after its
    -- session ended can never reach another one
    sid = tonumber(id_buf[0])
    self.sid = sid

    -- always: the session may be one an earlier object left new, with
    -- that object's options (-1: the directive's value); by connection,
    -- a side's own option before the one for both
    for i, side in ipairs(_SIDES) do
        local t = self[side .. "_deflate_context_takeover"]
        if t == nil then
            t = self.deflate_context_takeover
        end

        deflate_takeover[i - 1] = t == nil and -1 or (t and 1 or 0)
        deflate_bits[i - 1] = self[side .. "_deflate_window_bits"]
                              or self.deflate_window_bits or -1
    end

    C.ngx_http_ws_proxy_ffi_deflate(r, sid,
        self.deflate == nil and -1 or _DEFLATE_SIDES[self.deflate],
        deflate_takeover, deflate_bits, self.deflate_level or -1,
        self.deflate_mem_level or -1)

    return r, sid
end


-- Kong's log lines (forwarding close, limits, recv_timeout), which C keeps
-- for Lua (ngx_http_ws_proxy_lua_log_t: a level byte, a 2-byte length and
-- the text per line), so that they are Lua's lines as in Kong's library
local function write_logs(logs)
    local s = ffi_str(logs.data, logs.len)
    logs.len = 0

    local i, n = 1, #s
    while i + 2 <= n do
        local level, hi, lo = byte(s, i, i + 2)
        local len = hi * 256 + lo
        log(level, sub(s, i + 3, i + 2 + len))
        i = i + 3 + len
    end
end


-- waits on the session semaphore until C reports the end of a step; while
-- the pump runs (logs given), it also wakes to write the lines C kept
local function wait_main(r, sid, logs)
    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()

    while true do
        if logs and logs.len ~= 0 then
            write_logs(logs)
        end

        errlen[0] = ERR_BUF_SIZE
        local rc = C.ngx_http_ws_proxy_ffi_wait(r, sid, DIR_MAIN, err,
                                                errlen)
        if rc == NGX_DONE then
            return true
        end

        if rc ~= NGX_AGAIN then
            return nil, ffi_str(err, errlen[0])
        end

        co_yield()
    end
end


-- never forwarded: hop-by-hop, or the handshake's own
local _NOT_FORWARDED = {
    ["host"] = true, ["connection"] = true, ["upgrade"] = true,
    ["keep-alive"] = true, ["te"] = true, ["trailer"] = true,
    ["transfer-encoding"] = true, ["proxy-connection"] = true,
    ["proxy-authorization"] = true, ["content-length"] = true,
    ["sec-websocket-key"] = true, ["sec-websocket-version"] = true,
    ["sec-websocket-extensions"] = true, ["sec-websocket-accept"] = true,
    ["sec-websocket-protocol"] = true,
}


-- x_forwarded's headers: the client's copies are left out (a backend that
-- reads the first X-Real-IP would trust the client), X-Forwarded-For is
-- appended to as nginx's $proxy_add_x_forwarded_for does
local _X_FORWARDED = {
    ["x-forwarded-for"] = true, ["x-forwarded-proto"] = true,
    ["x-forwarded-host"] = true, ["x-real-ip"] = true,
}

local _EMPTY = {}


-- headers the module writes itself: the "headers" option may not set them
local _OWN_HEADERS = {
    ["host"] = "use the \"host\" option",
    ["sec-websocket-protocol"] = "use the \"protocols\" option",
    ["sec-websocket-key"] = "use the \"key\" option",
    ["connection"] = "the module sets it",
    ["upgrade"] = "the module sets it",
}


local function own_header(line)
    local name = line:match("^%s*([^:%s]+)%s*:")
    if not name then
        return nil
    end

    local lname = name:lower()
    local why = _OWN_HEADERS[lname]
    if not why and find(lname, "^sec%-websocket%-") then
        why = "the module sets it"
    end

    if why then
        return "custom header \"" .. name .. "\" is not allowed: " .. why
    end

    return nil
end


local function forwarded_headers(h, n, opts)
    local fwd = opts.forward_headers
    if fwd then
        local req = ngx.req.get_headers(100, true)
        local only
        if type(fwd) == "table" then
            only = {}
            for _, name in ipairs(fwd) do
                only[name:lower()] = true
            end
        end

        -- with x_forwarded, the proxy's own values replace the client's
        local own = opts.x_forwarded and _X_FORWARDED or _EMPTY

        for name, v in pairs(req) do
            local lname = name:lower()
            if not _NOT_FORWARDED[lname] and not own[lname]
               and (not only or only[lname])
            then
                if type(v) == "table" then
                    for _, vv in ipairs(v) do
                        n = n + 1
                        h[n] = name .. ": " .. vv
                    end
                else
                    n = n + 1
                    h[n] = name .. ": " .. v
                end
            end
        end
    end

    if opts.x_forwarded then
        local var = ngx.var
        local xff = var.http_x_forwarded_for
        n = n + 1
        h[n] = "X-Forwarded-For: " .. (xff and (xff .. ", ") or "")
               .. var.remote_addr
        n = n + 1
        h[n] = "X-Forwarded-Proto: " .. var.scheme
        n = n + 1
        h[n] = "X-Forwarded-Host: " .. (var.http_host or var.host)
        n = n + 1
        h[n] = "X-Real-IP: " .. var.remote_addr
    end

    return n
end


local _CTL = "[%z\1-\8\10-\31\127]"


local function escape_ctl(c)
    return fmt("\\x%02x", c:byte())
end


local function headers_string(opts)
    local h = {}
    local n = 0

    n = forwarded_headers(h, n, opts)

    local headers = opts.headers
    if headers ~= nil then
        if type(headers) ~= "table" then
            return nil, "custom headers must be a table"
        end

        -- lua-resty-websocket style { "Name: value", ... } or a map
        for k, v in pairs(headers) do
            local first = n + 1

            if type(k) == "number" then
                n = n + 1
                h[n] = tostring(v)

            elseif type(v) == "table" then
                for _, vv in ipairs(v) do
                    n = n + 1
                    h[n] = k .. ": " .. tostring(vv)
                end

            else
                n = n + 1
                h[n] = k .. ": " .. tostring(v)
            end

            for i = first, n do
                local err = own_header(h[i])
                if err then
                    return nil, err
                end
            end
        end
    end

    if opts.origin then
        n = n + 1
        h[n] = "Origin: " .. tostring(opts.origin)
    end

    -- RFC 9110 5.5: no control byte but HTAB in a field; CR or LF would
    -- start another header
    for i = 1, n do
        if find(h[i], _CTL) then
            return nil, "header contains a CR, LF or other control byte: "
                        .. (gsub(h[i], _CTL, escape_ctl))
        end
    end

    if n == 0 then
        return ""
    end

    return concat(h, "\r\n", 1, n) .. "\r\n"
end


-- the session caps (ws_proxy_limit_sessions, or the limit_sessions
-- option), before the upstream is dialled; C applies them once per session
local function limit_sessions(self, r, sid)
    local v = self.limit_sessions
    local n = -1
    local l

    if v == false then
        n = 0

    elseif v ~= nil then
        local list = v.zone ~= nil and { v } or v
        n = #list
        l = ffi_new("ngx_http_ws_proxy_ffi_limit_t[?]", n)

        for i = 1, n do
            local c = l[i - 1]
            c.zone = list[i].zone
            c.zone_len = #list[i].zone
            c.key = list[i].key
            c.key_len = list[i].key and #list[i].key or 0
            c.n = list[i].n
        end
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    -- l (and the option's strings, which the table keeps) live through
    -- the call
    local rc = C.ngx_http_ws_proxy_ffi_limit(r, sid, l, n, err, errlen)
    if rc ~= NGX_OK then
        return nil, ffi_str(err, errlen[0])
    end

    return true
end


-- connect_upstream()'s options that go to C as they are
local _CONNECT_NUMBERS = {
    "timeout", "connect_timeout", "send_timeout", "read_timeout",
}

local _CONNECT_STRINGS = { "host", "key", "server_name", "origin" }


function _M:connect_upstream(uri, opts)
    if self.upstream_state == _STATES.ESTABLISHED then
        log(WARN, log_escape(fmt("connection with upstream at %q already "
                                 .. "established", self.upstream_uri)))
        return true
    end

    if type(uri) ~= "string" then
        error("uri must be a string", 2)
    end

    if opts ~= nil and type(opts) ~= "table" then
        error("opts must be a table", 2)
    end

    opts = opts or {}

    if opts.forward_path then
        -- the client's path and query replace the URI's
        local base = uri:match("^(wss?://unix:[^:]*:)") or uri:match("^(wss?://[^/?]+)")
        if base then
            -- nginx accepts bytes in a request line that RFC 3986 does not
            -- (UTF-8, '"', ...): they are percent-encoded, so that the
            -- upstream URI's check does not refuse the client's path; a
            -- raw '#' starts a fragment, where nginx ended $uri: as %23
            -- with the rest it would name another path ("/x#/../admin")
            uri = base .. gsub(ngx.var.request_uri:match("^[^#]*"),
                               "[^%w%-%._~!$&'()*+,;=:@/?%%]",
                               function(c)
                                   return fmt("%%%02X", c:byte())
                               end)
        end
    end

    self:dd("connecting to \"", log_escape(uri), "\" upstream")

    local r, sid = session(self)
    if not r then
        return nil, sid
    end

    local lok, lerr = limit_sessions(self, r, sid)
    if not lok then
        return nil, lerr
    end

    -- the offer: these protocols, or (by default) the client's offer over
    -- all its lines, which C reads; C checks the upstream's choice
    local offer = opts.protocols
    if type(offer) == "table" then
        offer = concat(offer, ", ")

    elseif offer ~= nil then
        offer = tostring(offer)
    end

    if offer and find(offer, "[%z\r\n]") then
        return nil, "protocols contain a CR, LF or NUL"
    end

    local headers, herr = headers_string(opts)
    if not headers then
        return nil, herr
    end

    for i = 1, #_CONNECT_NUMBERS do
        local name = _CONNECT_NUMBERS[i]
        local nerr = bad_number("opts." .. name, opts[name], 1, MAX_INT)
        if nerr then
            return nil, nerr
        end
    end

    -- connect()'s option wins over new()'s, which wins over the directive
    local hs_size = opts.handshake_buffer_size or self.handshake_buffer_size
    local hs_err = bad_number("opts.handshake_buffer_size", hs_size,
                              HS_BUFFER_MIN, MAX_INT)
    if hs_err then
        return nil, hs_err
    end

    for i = 1, #_CONNECT_STRINGS do
        local name = _CONNECT_STRINGS[i]
        if opts[name] ~= nil and type(opts[name]) ~= "string" then
            return nil, "opts." .. name .. " must be a string"
        end
    end

    for _, name in ipairs({ "client_cert", "client_priv_key" }) do
        if opts[name] ~= nil and type(opts[name]) ~= "cdata" then
            return nil, "opts." .. name .. " must be a cdata (from "
                        .. "ngx.ssl.parse_pem_"
                        .. (name == "client_cert" and "cert" or "priv_key")
                        .. "())"
        end
    end

    local timeout = opts.timeout
    local o = conn_buf[0]
    o.uri = uri
    o.uri_len = #uri
    o.headers = headers
    o.headers_len = #headers
    o.server_name = opts.server_name
    o.server_name_len = opts.server_name and #opts.server_name or 0
    o.connect_timeout = opts.connect_timeout or timeout or 0
    o.send_timeout = opts.send_timeout or timeout or 0
    o.read_timeout = opts.read_timeout or timeout or 0
    if opts.ssl_verify == nil then
        o.ssl_verify = -1               -- ws_proxy_ssl_verify's
    else
        o.ssl_verify = opts.ssl_verify and 1 or 0
    end
    o.client_cert = opts.client_cert
    o.client_priv_key = opts.client_priv_key
    o.host = opts.host
    o.host_len = opts.host and #opts.host or 0
    o.key = opts.key
    o.key_len = opts.key and #opts.key or 0
    o.protocols = offer
    o.protocols_len = offer and #offer or 0
    o.forward_protocols = opts.forward_protocols ~= false and 1 or 0
    o.handshake_buffer_size = hs_size or 0

    if opts.host and find(opts.host, _CTL) then
        return nil, "host contains a CR, LF or other control byte"
    end

    if (opts.client_cert == nil) ~= (opts.client_priv_key == nil) then
        return nil, "client_cert and client_priv_key go together"
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    local rc = C.ngx_http_ws_proxy_ffi_connect(r, sid, o, err, errlen)
    if rc == NGX_ERROR then
        return nil, ffi_str(err, errlen[0])
    end

    if rc == NGX_AGAIN then
        local ok, werr = wait_main(r, sid)
        if not ok then
            return nil, werr
        end
    end

    err = get_string_buf(ERR_BUF_SIZE)
    errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    rc = C.ngx_http_ws_proxy_ffi_connect_result(r, sid, resp_buf, resp_len,
                                                err, errlen)
    if rc ~= NGX_OK then
        return nil, ffi_str(err, errlen[0])
    end

    local res = ffi_str(resp_buf[0], resp_len[0])

    self:dd("connected to \"", log_escape(uri), "\" upstream")

    self.upstream_uri = uri
    self.upstream_state = _STATES.ESTABLISHED

    return true, nil, res
end


function _M:connect_client()
    if self.client_state == _STATES.ESTABLISHED then
        log(WARN, "client handshake already completed")
        return true
    end

    self:dd("completing client handshake")

    local r, sid = session(self)
    if not r then
        return nil, sid
    end

    -- a session beyond a cap gets the location's status instead of a 101,
    -- as a bad request gets its 400 here
    local lok, lerr = limit_sessions(self, r, sid)
    if not lok then
        C.ngx_http_ws_proxy_ffi_relay_response(r, sid)
        return nil, lerr
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    local rc = C.ngx_http_ws_proxy_ffi_client_handshake(r, sid, err, errlen)
    if rc == NGX_ERROR then
        return nil, ffi_str(err, errlen[0])
    end

    self:dd("completed client handshake")

    self.client_state = _STATES.ESTABLISHED

    return true
end


-- the client's request is checked first (and refused with the answer
-- connect_client() would give), so that a request that cannot become a
-- session never opens an upstream one; then Kong's order: the upstream's
-- handshake, then the client's 101
local function check_client(self)
    if self.client_state == _STATES.ESTABLISHED then
        return true
    end

    local r, sid = session(self)
    if not r then
        return nil, sid
    end

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    if C.ngx_http_ws_proxy_ffi_client_check(r, sid, err, errlen) ~= NGX_OK
    then
        return nil, ffi_str(err, errlen[0])
    end

    return true
end


function _M:connect(uri, upstream_opts)
    local ok, err = check_client(self)
    if not ok then
        return nil, "failed client handshake: " .. err
    end

    -- a session beyond a cap is refused here, with the location's status
    -- (ws_proxy_limit_sessions_status, 429), before anything else is done
    local r, sid = session(self)
    if not r then
        return nil, sid
    end

    ok, err = limit_sessions(self, r, sid)
    if not ok then
        C.ngx_http_ws_proxy_ffi_relay_response(r, sid)
        return nil, err
    end

    ok, err = self:connect_upstream(uri, upstream_opts)
    if not ok then
        -- an upstream that refused the upgrade answers the client: its
        -- status, headers and body (a 401 stays a 401)
        local r = get_request()
        if self.sid and r then
            C.ngx_http_ws_proxy_ffi_relay_response(r, self.sid)
        end

        return nil, "failed connecting to upstream: " .. err
    end

    ok, err = self:connect_client()
    if not ok then
        return nil, "failed client handshake: " .. err
    end

    return true
end


local function debug_frame(self, role, typ, data, fin, code)
    local arrow
    if typ == "close" then
        arrow = role == "client" and "--x" or "x--"
    else
        arrow = role == "client" and "-->" or "<--"
    end

    local payload = data and gsub(data, "\n", "\\n") or ""
    if #payload > _DEBUG_PAYLOAD_MAX_LEN then
        payload = sub(payload, 1, _DEBUG_PAYLOAD_MAX_LEN) .. "[...]"
    end

    local extra = ""
    if code then
        extra = fmt("\n  code: %d", code)
    end

    self:dd(fmt("\n[frame] downstream %s resty.proxy %s upstream\n" ..
                "  aggregating: %s\n" ..
                "  type: \"%s\"%s\n" ..
                "  payload: %s (len: %d)\n" ..
                "  fin: %s",
                arrow, arrow,
                self.aggregate_fragments,
                typ, extra,
                log_escape(fmt("%q", payload)), data and #data or 0,
                fin))
end


-- the first failure is what execute() returns
local function hook_failed(self, r, sid, role, msg)
    msg = "on_frame handler failed for a frame from " .. role .. ": "
          .. log_escape(msg)
    log(ERR, msg)

    if not self.hook_error then
        self.hook_error = msg
    end

    local reason = "Internal Error"
    C.ngx_http_ws_proxy_ffi_abort(r, sid, 1011, reason, #reason)
end


-- One light thread per direction, so that a hook that yields on one
-- direction does not hold the other.  The frame is read from the
-- direction's slot, which C fills before it wakes the thread: a wake-up
-- with a frame ready costs no call into C.  The error buffers are taken
-- once: they are read only right after the call that fills them.  errlen
-- is lua-resty-core's shared size pointer, which the hook (ngx.var, any
-- FFI API) and the other direction's thread write too: it is reset before
-- every call that may fail after Lua code ran.
local function hook_loop(self, r, sid, dir, logs)
    local role = _ROLES[dir]
    local on_frame = self.on_frame
    local debug = self.debug
    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    local slot = C.ngx_http_ws_proxy_ffi_slot(r, sid, dir)

    if slot == nil then
        log(ERR, "failed receiving frame from ", role, ": proxy does not ",
            "belong to the current request")
        return
    end

    errlen[0] = ERR_BUF_SIZE
    local rc = C.ngx_http_ws_proxy_ffi_wait(r, sid, dir, err, errlen)

    -- The loop branches on slot.ready first and on rc only then: whichever
    -- path LuaJIT records first, the path to the yield then starts with a
    -- guard of its own, and the yield is stitched rather than sent back to
    -- the interpreter once per frame ("trace too short"; it cost about
    -- 1,300 instructions per echoed message, in some runs and not others).
    while true do
        if slot.ready == 0 then
            if rc == NGX_AGAIN then
                co_yield()

                if slot.ready == 0 then
                    -- a timeout, log lines, or the end of the session
                    if logs.len ~= 0 then
                        write_logs(logs)
                    end

                    errlen[0] = ERR_BUF_SIZE
                    rc = C.ngx_http_ws_proxy_ffi_wait(r, sid, dir, err, errlen)
                end

            elseif rc == NGX_DONE then
                return

            else
                log(ERR, "failed receiving frame from ", role, ": ",
                    log_escape(ffi_str(err, errlen[0])))
                return
            end

        else
            local seq = slot.seq
            local typ = _OPCODE2TYP[slot.opcode]
            local payload = ffi_str(slot.data, slot.len)
            local fin = slot.fin == 1
            local code = slot.code
            if code < 0 then
                code = nil
            end

            if debug then
                debug_frame(self, role, typ, payload, fin, code)
            end

            local verdict, data, new_code = VERDICT_FORWARD, nil, -1

            if on_frame then
                local ok, updated, updated_code = pcall(on_frame, self, role,
                                                        typ, payload, fin,
                                                        code)
                if not ok then
                    hook_failed(self, r, sid, role, tostring(updated))
                    verdict = VERDICT_DROP

                elseif updated == nil then
                    if typ ~= "close" then
                        self:dd(role, " dropping ", typ,
                                " frame after on_frame handler requested it")
                    end

                    verdict = VERDICT_DROP

                elseif type(updated) ~= "string" then
                    hook_failed(self, r, sid, role, "opts.on_frame return "
                                .. "value must be nil or a string")
                    verdict = VERDICT_DROP

                elseif updated ~= payload then
                    verdict = VERDICT_REWRITE
                    data = updated
                end

                if ok and typ == "close" and updated_code ~= nil then
                    if type(updated_code) ~= "number" then
                        hook_failed(self, r, sid, role, "opts.on_frame "
                                    .. "status code return value must be "
                                    .. "nil or a number")
                        verdict = VERDICT_DROP

                    else
                        new_code = updated_code
                        if verdict == VERDICT_FORWARD then
                            verdict = VERDICT_REWRITE
                            data = payload
                        end
                    end
                end
            end

            errlen[0] = ERR_BUF_SIZE
            rc = C.ngx_http_ws_proxy_ffi_verdict(r, sid, dir, seq, verdict,
                                                 data, data and #data or 0,
                                                 new_code, err, errlen)

            if logs.len ~= 0 then
                write_logs(logs)
            end

            if rc == NGX_ERROR then
                hook_failed(self, r, sid, role, ffi_str(err, errlen[0]))
                errlen[0] = ERR_BUF_SIZE
                rc = C.ngx_http_ws_proxy_ffi_wait(r, sid, dir, err, errlen)
            end
        end
    end
end


function _M:execute()
    if self.client_state ~= _STATES.ESTABLISHED then
        return nil, "client handshake not complete"
    end

    if self.upstream_state ~= _STATES.ESTABLISHED then
        return nil, "upstream connection not established"
    end

    local r, sid = session(self)
    if not r then
        return nil, sid
    end

    local hook = self.on_frame ~= nil or self.debug
    self.hook_error = nil

    local o = opts_buf[0]
    o.client_max_frame_size = self.client_max_frame_size or 0
    o.upstream_max_frame_size = self.upstream_max_frame_size or 0
    o.max_payload = self.max_payload_size or 0
    o.client_max_fragments = self.client_max_fragments or 0
    o.upstream_max_fragments = self.upstream_max_fragments or 0
    o.recv_timeout = self.recv_timeout or 0
    o.send_timeout = self.send_timeout or 0
    o.close_timeout = self.close_timeout or 0
    o.idle_timeout = self.idle_timeout or 0
    o.ping_interval = self.ping_interval or 0
    o.ping_timeout = self.ping_timeout or 0
    o.session_timeout = self.session_timeout or 0
    o.hook = hook and 1 or 0
    -- not given: the directive's (ws_proxy_aggregate_fragments)
    if self.aggregate_fragments == nil then
        o.aggregate = -1
    else
        o.aggregate = self.aggregate_fragments and 1 or 0
    end
    o.debug = self.debug and 1 or 0
    o.drain_time = self.drain_time or 0
    -- not given: the directive's (ws_proxy_flight_recorder); 0: off
    o.flight_recorder = self.flight_recorder or -1
    -- not given: the directive's (ws_proxy_tap_payloads)
    o.tap_payloads = self.tap_payloads or -1

    local err = get_string_buf(ERR_BUF_SIZE)
    local errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    if C.ngx_http_ws_proxy_ffi_set_opts(r, sid, o, err, errlen) ~= NGX_OK
    then
        return nil, ffi_str(err, errlen[0])
    end

    if self.limit_messages ~= nil then
        local rc, rerr = apply_rate(sid, self.limit_messages)
        if rc ~= NGX_OK then
            return nil, rerr or "proxy is not running"
        end
    end

    errlen[0] = ERR_BUF_SIZE
    if C.ngx_http_ws_proxy_ffi_execute(r, sid, err, errlen) ~= NGX_OK then
        return nil, ffi_str(err, errlen[0])
    end

    local logs = C.ngx_http_ws_proxy_ffi_logs(r, sid)

    if hook then
        local th, terr = spawn(hook_loop, self, r, sid, DIR_UPSTREAM, logs)
        if not th then
            hook_failed(self, r, sid, "upstream", terr)
        end

        hook_loop(self, r, sid, DIR_CLIENT, logs)

        if th then
            local ok, werr = wait(th)
            if not ok then
                log(ERR, "failed to wait for websocket proxy thread: ",
                    log_escape(tostring(werr)))
            end
        end
    end

    -- without a hook this sleeps until the session ends, but for the logs
    local ok, werr = wait_main(r, sid, logs)

    if logs.len ~= 0 then
        write_logs(logs)
    end

    -- the final figures outlive the request: stats() still returns them
    -- once the C session is freed (from a timer, another request)
    self.final_stats = self:stats()

    if not ok then
        return nil, werr
    end

    self.client_state = _STATES.INIT
    self.upstream_state = _STATES.INIT

    err = get_string_buf(ERR_BUF_SIZE)
    errlen = get_size_ptr()
    errlen[0] = ERR_BUF_SIZE

    if C.ngx_http_ws_proxy_ffi_result(r, sid, err, errlen) ~= NGX_OK then
        return nil, self.hook_error or ffi_str(err, errlen[0])
    end

    return true
end


-- Kong Gateway's PDK-style controls; callable from the hook, another light
-- thread, a timer or another request of the same worker while execute() runs

function _M:close(status, message, peer_status, peer_message)
    status = status or 1000
    message = message or ""
    peer_status = peer_status or status
    peer_message = peer_message or message

    if not valid_close_code(status) then
        error("status must be a valid close status code", 2)
    end

    if not valid_close_code(peer_status) then
        error("peer_status must be a valid close status code", 2)
    end

    if type(message) ~= "string" or type(peer_message) ~= "string" then
        error("messages must be strings", 2)
    end

    -- the module's own close frames must be valid (RFC 6455 5.5, 5.5.1)
    if #message > 123 or #peer_message > 123 then
        return nil, "close messages are limited to 123 bytes"
    end

    if not utf8_valid(message) or not utf8_valid(peer_message) then
        return nil, "close messages must be valid UTF-8"
    end

    if not self.sid then
        return nil, "proxy is not running"
    end

    local rc = C.ngx_http_ws_proxy_ffi_close(self.sid, status, message,
                                             #message, peer_status,
                                             peer_message, #peer_message)
    if rc ~= NGX_OK then
        return nil, "proxy is not running"
    end

    return true
end


-- both peers get the close (default 1008 "session expired") `seconds` from
-- now; a later call moves the deadline; before execute() it replaces
-- session_timeout
function _M:set_deadline(seconds, code, reason)
    code = code or 1008
    reason = reason or "session expired"

    if type(seconds) ~= "number" or not (seconds >= 0)
       or seconds * 1000 > MAX_INT
    then
        error("seconds must be a number >= 0 and <= " .. MAX_INT / 1000, 2)
    end

    if not valid_close_code(code) then
        error("code must be a valid close status code", 2)
    end

    if type(reason) ~= "string" then
        error("reason must be a string", 2)
    end

    if #reason > 123 then
        return nil, "close messages are limited to 123 bytes"
    end

    if not utf8_valid(reason) then
        return nil, "close messages must be valid UTF-8"
    end

    if not self.sid then
        return nil, "proxy is not running"
    end

    local rc = C.ngx_http_ws_proxy_ffi_set_deadline(self.sid, seconds * 1000,
                                                    code, reason, #reason)
    if rc ~= NGX_OK then
        return nil, "proxy is not running"
    end

    return true
end


-- role is the peer the frame goes to: "client" or "upstream"
function _M:send_frame(role, typ, payload)
    local dir
    if role == "client" then
        dir = DIR_UPSTREAM

    elseif role == "upstream" then
        dir = DIR_CLIENT

    else
        error("role must be \"client\" or \"upstream\"", 2)
    end

    local opcode = _TYP2OPCODE[typ]
    if not opcode then
        error("type must be one of \"text\", \"binary\", \"ping\", "
              .. "\"pong\" (use close() to close)", 2)
    end

    payload = payload or ""
    if type(payload) ~= "string" then
        error("payload must be a string", 2)
    end

    if opcode >= 0x8 and #payload > 125 then
        error("control frame payloads are limited to 125 bytes", 2)
    end

    if opcode == 0x1 and not utf8_valid(payload) then
        return nil, "text frame payload must be valid UTF-8"
    end

    if not self.sid then
        return nil, "proxy is not running"
    end

    local rc = C.ngx_http_ws_proxy_ffi_send_frame(self.sid, dir, opcode,
                                                  payload, #payload)
    if rc == NGX_DECLINED then
        return nil, "proxy is not running"
    end

    if rc ~= NGX_OK then
        return nil, "no memory"
    end

    return true
end


local function set_limit(self, role, size, fragments)
    local dir
    if role == "client" then
        dir = DIR_CLIENT

    elseif role == "upstream" then
        dir = DIR_UPSTREAM

    else
        error("role must be \"client\" or \"upstream\"", 3)
    end

    local field = role .. (size and "_max_frame_size" or "_max_fragments")
    self[field] = size or fragments

    if not self.sid then
        return true
    end

    local rc = C.ngx_http_ws_proxy_ffi_set_limits(self.sid, dir, size or -1,
                                                  fragments or -1)
    if rc ~= NGX_OK then
        return nil, "proxy is not running"
    end

    return true
end


-- a message rate of the session's own or of a zone, as the limit_messages
-- option takes it, from connect() on (in on_frame too: from the next
-- message); false lifts it; before connect() it replaces the option
function _M:set_rate(v)
    local err = check_rate(v, "rate")
    if err then
        error(err, 2)
    end

    if not self.sid then
        self.limit_messages = v
        return true
    end

    local rc, rerr = apply_rate(self.sid, v)
    if rc ~= NGX_OK then
        return nil, rerr or "proxy is not running"
    end

    return true
end


-- the limit on frames (or aggregated messages) sent by role
function _M:set_max_payload_size(role, size)
    if type(size) ~= "number" or not (size >= 0) or size > MAX_SIZE then
        error("size must be a number >= 0 (0: unlimited)", 2)
    end

    return set_limit(self, role, size, nil)
end


function _M:set_max_fragments(role, n)
    if type(n) ~= "number" or not (n >= 0) or n > MAX_INT then
        error("n must be a number >= 0 (0: unlimited)", 2)
    end

    return set_limit(self, role, nil, n)
end


function _M:stats()
    if not self.sid then
        return nil, "proxy is not running"
    end

    local st = stats_buf[0]
    if C.ngx_http_ws_proxy_ffi_stats(self.sid, st) ~= NGX_OK then
        local final = self.final_stats
        if not final then
            return nil, "proxy is not running"
        end

        local copy = {}
        for k, v in pairs(final) do
            copy[k] = v
        end

        return copy
    end

    return {
        state = _SESSION_STATES[st.state],
        client_frames = tonumber(st.frames[0]),
        upstream_frames = tonumber(st.frames[1]),
        client_bytes = tonumber(st.bytes[0]),
        upstream_bytes = tonumber(st.bytes[1]),
        client_messages = tonumber(st.messages[0]),
        upstream_messages = tonumber(st.messages[1]),
        client_close_code = st.close_code[0] >= 0 and st.close_code[0] or nil,
        upstream_close_code = st.close_code[1] >= 0 and st.close_code[1]
                              or nil,
        closed_by = _CLOSED_BY[st.closed_by],
        ended_by = _ENDED_BY[st.ended_by],
        duration = tonumber(st.duration),
        upstream_addr = st.upstream_addr_len > 0
                        and ffi_str(st.upstream_addr, st.upstream_addr_len)
                        or nil,
        client_compressed_bytes = tonumber(st.zbytes[0]),
        client_uncompressed_bytes = tonumber(st.zplain[0]),
        upstream_compressed_bytes = tonumber(st.zbytes[1]),
        upstream_uncompressed_bytes = tonumber(st.zplain[1]),
    }
end


-- The console (docs/api.md, "The console"): the sessions of the
-- ws_proxy_zone in every worker, and closing one by id

local SESSION_FILTERS = {
    "key", "client", "upstream", "min_age", "max_age", "state", "sort",
    "offset", "limit",
}
local sessions_total = ffi_new("int[1]")
local sessions_unlisted = ffi_new("int[1]")


-- ws_proxy.sessions(filter): a list of sessions (S of docs/api.md), as
-- the console's ?sessions answers it; nil, err when there is no
-- ws_proxy_zone or the filter is bad
function _M.sessions(filter)
    if filter ~= nil and type(filter) ~= "table" then
        error("filter must be a table", 2)
    end

    local args = {}
    for _, name in ipairs(SESSION_FILTERS) do
        local v = filter and filter[name]
        if v ~= nil then
            if type(v) ~= "string" and type(v) ~= "number" then
                error("filter." .. name .. " must be a string or a number", 2)
            end
            args[#args + 1] = name .. "=" .. ngx.escape_uri(tostring(v))
        end
    end

    local q = table.concat(args, "&")
    local limit = tonumber(filter and filter.limit) or 100
    if limit < 0 or limit > 1000 then
        return nil, "filter.limit must be from 0 to 1000"
    end

    local out = ffi_new("ngx_http_ws_proxy_ffi_session_t[?]", limit + 1)
    local n = C.ngx_http_ws_proxy_ffi_sessions(q, #q, out, limit,
                                               sessions_total,
                                               sessions_unlisted)
    if n == NGX_DECLINED then
        return nil, "no ws_proxy_zone"
    end

    if n < 0 then
        return nil, "bad filter: " .. q
    end

    local list = {}

    for i = 0, n - 1 do
        local s = out[i]
        local ended = s.state ~= 0
        local codes = {}
        if ended then
            codes.client = s.close_code[0] >= 0 and s.close_code[0] or nil
            codes.upstream = s.close_code[1] >= 0 and s.close_code[1] or nil
        end

        list[i + 1] = {
            id = string.format("%d-%d", s.epoch, s.seq),
            key = ffi_str(s.key, s.key_len),
            location = ffi_str(s.location, s.location_len),
            client = ffi_str(s.client, s.client_len),
            upstream = ffi_str(s.upstream, s.upstream_len),
            start = s.start,
            age = s.age,
            worker = s.worker,
            frames = { client = s.frames[0], upstream = s.frames[1] },
            bytes = { client = s.bytes[0], upstream = s.bytes[1] },
            deflate = s.deflate ~= 0,
            hook = s.hook ~= 0,
            state = ended and "ended" or "open",
            ["end"] = ended and _ENDED_BY[s.ended_by] or nil,
            close_codes = codes,
            recorder = s.recorder ~= 0,
            taps = s.taps,
        }
    end

    return list, sessions_total[0], sessions_unlisted[0]
end


-- ws_proxy.close_session(id, code, reason): the worker that holds the
-- session sends the close frames (code: 1000 or 3000-4999, default 1000)
-- within a quarter of a second; true, or nil, err
function _M.close_session(id, code, reason)
    if type(id) ~= "string" then
        error("id must be a string", 2)
    end

    if code ~= nil and (type(code) ~= "number" or code % 1 ~= 0) then
        error("code must be an integer", 2)
    end

    if reason ~= nil and type(reason) ~= "string" then
        error("reason must be a string", 2)
    end

    reason = reason or ""

    local rc = C.ngx_http_ws_proxy_ffi_close_session(id, #id, code or -1,
                                                     reason, #reason)
    if rc == NGX_OK then
        return true
    end

    if rc == NGX_DECLINED then
        return nil, "no session " .. id
    end

    if rc == NGX_ERROR then
        return nil, "bad close code or reason: a code 1000 or 3000-4999, "
                    .. "a UTF-8 reason of at most 123 bytes"
    end

    return nil, "no ws_proxy_zone"
end


return _M
