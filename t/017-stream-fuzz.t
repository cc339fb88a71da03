# vim:set ts=4 sts=4 sw=4 et ft=:

# The pump's own parser under random streams, through a real nginx: seeded
# random messages (text of random UTF-8, binary of random bytes, fragmented
# or not, pings in between, payload lengths across the three encodings and
# beyond the input buffer) written in random pieces, with and without
# aggregation and a hook.  The raw upstream echoes every data frame as it
# gets it; the client must read back exactly what the options say.  Then
# the same streams with random bytes changed: whatever happens, a close
# carries a code of RFC 6455 and the worker keeps serving.  Then streams
# that end with a close and the sender's FIN at once, and streams that end
# with a violation: every frame before arrives, then the close.  (Half-
# closes need shutdown(), which cosockets lack: t/e2e/resets.py, run by
# t/015, has them, with seeded random streams that end with a close and a
# half-close from either side: case_random_half_closes().)

use lib '.';
use t::WsRaw;

plan 'no_plan';

our $Gen = <<'_EOC_';
            local char, random, concat = string.char, math.random, table.concat

            -- a random valid UTF-8 string of about n bytes
            local function utf8(n)
                local t = {}
                local len = 0
                while len < n do
                    local k = random(1, 10)
                    local s
                    if k <= 6 then
                        s = char(random(0x20, 0x7e))
                    elseif k <= 8 then
                        s = char(random(0xc2, 0xdf), random(0x80, 0xbf))
                    elseif k == 9 then
                        s = char(0xe1, random(0x80, 0xbf), random(0x80, 0xbf))
                    else
                        s = char(0xf0, random(0x90, 0xbf), random(0x80, 0xbf),
                                 random(0x80, 0xbf))
                    end
                    t[#t + 1] = s
                    len = len + #s
                end
                return concat(t)
            end

            local function bytes(n)
                local t = {}
                for i = 1, n do
                    t[i] = char(random(0, 255))
                end
                return concat(t)
            end

            local sizes = { 0, 1, 2, 30, 125, 126, 127, 1000, 4096, 65535,
                            65536, 70000 }

            -- frames to send and frames expected back, for one session
            local function stream(aggregate, unmasked)
                local out, want = {}, {}
                for m = 1, random(1, 6) do
                    local opcode = random(1, 2)
                    local size = sizes[random(1, random() < 0.8 and 9
                                                 or #sizes)]
                    local msg = opcode == 1 and utf8(size) or bytes(size)
                    local n = random() < 0.4 and random(2, 5) or 1
                    local cuts = {}
                    for i = 1, n - 1 do
                        cuts[i] = random(0, #msg)
                    end
                    table.sort(cuts)
                    local from = 1
                    for i = 1, n do
                        local to = cuts[i] or #msg
                        local part = msg:sub(from, to)
                        from = to + 1
                        out[#out + 1] = ws.build_frame{
                            opcode = i == 1 and opcode or 0,
                            fin = i == n, payload = part,
                            mask = not unmasked }
                        if not aggregate then
                            want[#want + 1] = { opcode = i == 1 and opcode
                                                         or 0,
                                                fin = i == n, payload = part }
                        end
                        if random() < 0.2 then
                            out[#out + 1] = ws.build_frame{
                                opcode = 9, payload = "hb",
                                mask = not unmasked }
                        end
                    end
                    if aggregate then
                        want[#want + 1] = { opcode = opcode, fin = true,
                                            payload = msg }
                    end
                end
                return concat(out), want
            end

            local function send_pieces(c, s)
                local pos = 1
                while pos <= #s do
                    local n = random(1, random() < 0.5 and 16 or 5000)
                    assert(c:send_raw(s:sub(pos, pos + n - 1)))
                    pos = pos + n
                end
            end
_EOC_

our $Valid = $::Gen . <<'_EOC_';
            local bad = 0
            for seed = 1, 25 do
                math.randomseed(seed)
                local c = assert(ws.client("/proxy"))
                local s, want = stream(AGGREGATE)
                send_pieces(c, s)
                for i, w in ipairs(want) do
                    local f, err = c:recv_frame()
                    if not f or f.opcode ~= w.opcode or f.fin ~= w.fin
                       or f.payload ~= w.payload
                    then
                        bad = bad + 1
                        ngx.say("seed ", seed, " frame ", i, ": got ",
                                ws.describe(f, err), ", want ",
                                ws.describe(w))
                        break
                    end
                end
                c:send_close(1000)
                local f = c:recv_frame()
                if not f or f.opcode ~= 8 or f.code ~= 1000 then
                    bad = bad + 1
                    ngx.say("seed ", seed, ": close ", ws.describe(f))
                end
                c:close()
            end
            ngx.say(bad == 0 and "25 streams echoed" or bad .. " failed")
_EOC_

# the recorder of t/WsRaw.pm, with time for valgrind: streams written 16
# bytes at a time leave gaps longer than its 3 s between frames there
our $Upstream = "                s.sock:settimeout(ws.ms(60000))\n" . $t::WsRaw::Recorder;

run_tests();

__DATA__

=== TEST 1: random streams, frames forwarded as they come
--- proxy_opts
{}
--- upstream eval: $::Upstream
--- client eval: $::Valid =~ s/AGGREGATE/false/r
--- response_body
25 streams echoed
--- timeout: 30
--- no_error_log
[error]



=== TEST 2: random streams, fragments aggregated
--- proxy_opts
{ aggregate_fragments = true }
--- upstream eval: $::Upstream
--- client eval: $::Valid =~ s/AGGREGATE/true/r
--- response_body
25 streams echoed
--- timeout: 30
--- no_error_log
[error]



=== TEST 3: random streams through a hook that forwards every frame
--- proxy_opts
{ on_frame = function(p, role, typ, payload) return payload end }
--- upstream eval: $::Upstream
--- client eval: $::Valid =~ s/AGGREGATE/false/r
--- response_body
25 streams echoed
--- timeout: 30
--- no_error_log
[error]



=== TEST 4: random streams, aggregated, through a hook
--- proxy_opts
{ aggregate_fragments = true,
  on_frame = function(p, role, typ, payload) return payload end }
--- upstream eval: $::Upstream
--- client eval: $::Valid =~ s/AGGREGATE/true/r
--- response_body
25 streams echoed
--- timeout: 30
--- no_error_log
[error]



=== TEST 5: random streams with bytes changed: RFC close codes, nothing breaks
Each stream has one to four random bytes replaced; the client reads what
comes back until a close, a timeout or the end of the connection.  Any
close must carry a code an endpoint may send; a session afterwards must
still echo.
--- proxy_opts
{ aggregate_fragments = (ngx.var.arg_agg == "1"),
  on_frame = ngx.var.arg_hook == "1"
             and function(p, role, typ, payload) return payload end
             or nil }
--- upstream eval: $::Upstream
--- client eval
$::Gen . <<'_EOC_';
            local codes = { [1000] = true, [1001] = true, [1002] = true,
                            [1007] = true, [1009] = true }
            local bad, closes = 0, 0
            for seed = 1, 40 do
                math.randomseed(1000 + seed)
                local agg, hook = seed % 2, math.floor(seed / 2) % 2
                local c = assert(ws.client("/proxy?agg=" .. agg
                                           .. "&hook=" .. hook))
                c.sock:settimeout(ws.ms(300))
                local s = stream(agg == 1)
                for i = 1, random(1, 4) do
                    local p = random(1, #s)
                    s = s:sub(1, p - 1) .. char(random(0, 255)) .. s:sub(p + 1)
                end
                send_pieces(c, s)
                while true do
                    local f = c:recv_frame()
                    if not f then
                        break
                    end
                    if f.opcode == 8 then
                        closes = closes + 1
                        if not codes[f.code] then
                            bad = bad + 1
                            ngx.say("seed ", seed, ": ", ws.describe(f))
                        end
                        break
                    end
                end
                c:close()
            end
            local c = assert(ws.client("/proxy"))
            c:send_text("still here")
            ngx.say(ws.describe(c:recv_frame()))
            ngx.say(bad == 0 and "close codes ok" or bad .. " bad codes")
            ngx.log(ngx.INFO, "closes seen: ", closes)
_EOC_
--- response_body
text:still here
close codes ok
--- timeout: 60
--- no_error_log
[alert]



=== TEST 6: random streams from the upstream that end with a close and its FIN
The upstream takes the seed from the client's first frame, sends that
stream in random pieces, a close, and ends its handler (FIN) at once.
--- proxy_opts
{ aggregate_fragments = (ngx.var.arg_agg == "1"),
  on_frame = ngx.var.arg_hook == "1"
             and function(p, role, typ, payload) return payload end
             or nil }
--- upstream eval
$::Gen . <<'_EOC_';
                local f = assert(s:recv_frame())
                if f.opcode == 8 then
                    -- the session of t/WsRaw.pm's own client, unused
                    return
                end
                local seed, agg = f.payload:match("^(%d+) (%d)$")
                math.randomseed(tonumber(seed))
                local stream_s = stream(agg == "1", true)
                send_pieces(s, stream_s)
                s:send_close(1000, "bye " .. seed)
_EOC_
--- client eval
$::Gen . <<'_EOC_';
            local bad = 0
            for seed = 1, 24 do
                local agg, hook = seed % 2, math.floor(seed / 2) % 2
                local c = assert(ws.client("/proxy?agg=" .. agg
                                           .. "&hook=" .. hook))
                c:send_text(seed .. " " .. agg)
                math.randomseed(seed)
                local _, want = stream(agg == 1, true)
                for i, w in ipairs(want) do
                    local f, err
                    repeat
                        f, err = c:recv_frame()
                    until not f or f.opcode ~= 9
                    if not f or f.opcode ~= w.opcode or f.fin ~= w.fin
                       or f.payload ~= w.payload
                    then
                        bad = bad + 1
                        ngx.say("seed ", seed, " frame ", i, ": got ",
                                ws.describe(f, err))
                        break
                    end
                end
                local f
                repeat f = c:recv_frame() until not f or f.opcode ~= 9
                if not f or f.opcode ~= 8 or f.code ~= 1000
                   or f.reason ~= "bye " .. seed
                then
                    bad = bad + 1
                    ngx.say("seed ", seed, ": close ", ws.describe(f))
                end
                c:send_close(1000)
                c:close()
            end
            ngx.say(bad == 0 and "24 closes arrived" or bad .. " failed")
_EOC_
--- response_body
24 closes arrived
--- timeout: 60
--- no_error_log
[alert]
[error]



=== TEST 7: random streams that end with a violation, from either side
The client sends a random stream and a frame with RSV2 set (seeds 2, 3, 6, 7, ...),
or asks the upstream for a stream that ends with one (the others): every
frame of the upstream's stream arrives, then its close; a client that broke
the rule gets its close at once, after the echoes the proxy already held
(1002 to the offender, 1001 to the other peer).
--- proxy_opts
{ aggregate_fragments = (ngx.var.arg_agg == "1"),
  on_frame = ngx.var.arg_hook == "1"
             and function(p, role, typ, payload) return payload end
             or nil }
--- upstream eval
$::Gen . <<'_EOC_';
                s.sock:settimeout(ws.ms(60000))
                while true do
                    local f = s:recv_frame()
                    if not f then
                        break
                    end
                    if f.opcode == 8 then
                        s:send_close(f.code, f.reason)
                        break
                    end
                    local seed, agg = f.payload:match("^upstream (%d+) (%d)$")
                    if seed then
                        math.randomseed(tonumber(seed))
                        send_pieces(s, (stream(agg == "1", true)))
                        s:send_frame{ opcode = 1, rsv = 2, payload = "x" }
                    elseif f.opcode <= 2 then
                        s:send_frame{ opcode = f.opcode, fin = f.fin,
                                      payload = f.payload }
                    end
                end
_EOC_
--- client eval
$::Gen . <<'_EOC_';
            local bad = 0
            for seed = 1, 24 do
                local agg, hook = seed % 2, math.floor(seed / 4) % 2
                local from_client = math.floor(seed / 2) % 2 == 1
                local c = assert(ws.client("/proxy?agg=" .. agg
                                           .. "&hook=" .. hook))
                math.randomseed(seed)
                local s, want = stream(agg == 1, not from_client)
                if from_client then
                    send_pieces(c, s)
                    c:send_frame{ opcode = 1, rsv = 2, payload = "x" }
                else
                    c:send_text("upstream " .. seed .. " " .. agg)
                end
                -- the offender's close comes at once, after what the
                -- proxy holds for it: a client that broke the rule gets a
                -- prefix of its echoes, an upstream's stream arrives whole
                local f, err
                for i, w in ipairs(want) do
                    repeat
                        f, err = c:recv_frame()
                    until not f or f.opcode ~= 9
                    if from_client and f and f.opcode == 8 then
                        break
                    end
                    if not f or f.opcode ~= w.opcode or f.fin ~= w.fin
                       or f.payload ~= w.payload
                    then
                        bad = bad + 1
                        ngx.say("seed ", seed, " frame ", i, ": got ",
                                ws.describe(f, err))
                        break
                    end
                    f = nil
                end
                if not f or f.opcode ~= 8 then
                    repeat f = c:recv_frame() until not f or f.opcode ~= 9
                end
                local code = from_client and 1002 or 1001
                if not f or f.opcode ~= 8 or f.code ~= code then
                    bad = bad + 1
                    ngx.say("seed ", seed, ": close ", ws.describe(f))
                end
                if not from_client then
                    c:send_close(1001)
                end
                c:close()
            end
            ngx.say(bad == 0 and "24 violations drained" or bad .. " failed")
_EOC_
--- response_body
24 violations drained
--- timeout: 60
--- no_error_log
[alert]
