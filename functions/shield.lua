#!lua name=shield
--[[
redis-shield without the module: the same limiter as a Redis Functions
library (Redis 7.0+, Valkey 7.2+), on the same keys, with the same replies,
the same error texts and the same stored bytes as the module.

  FCALL    shield_absorb    1 key capacity period [tokens] [WITHDETAILS]
  FCALL_RO shield_inspect   1 key capacity period
  FCALL    shield_absorball N key1 .. keyN capacity1 period1 tokens1 .. capacityN periodN tokensN

Load:  redis-cli FUNCTION LOAD REPLACE "$(cat functions/shield.lua)"
       (scripts/load-functions.sh does it on a server or on every master of
       a cluster).

Exactness. Lua numbers are doubles, so every value computed here is an
integer below 2^53. Time is counted in ticks of 1/capacity ms (a token is
period*1000 ticks), like the module, but only relative to now: the state
is the deficit of the bucket (ticks missing from full), at most
capacity*period*1000, never an absolute tick. Hence the range of this
library: capacity * period <= 8 * 10^12 (8 * 10^15 ticks, with room to
round below 2^53); the module accepts capacity up to 10^15 and period up to
10^10 s independently. Divisions are exact (idiv), and a remainder stored
with another denominator (up to 2^64-1) is converted with a small exact
multiplication in base 10^7.

Storage, as the module writes it: `~0` or `~<remainder>/<capacity>`, the
key's absolute expiry being the moment the bucket is full again rounded up
to the ms, written with SET key value PXAT ms (Redis replicates functions by
effect: replicas and the AOF get exactly that). A 1.x integer value is the
tokens left at the moment of the first absorb, which stores it in the 2.x
form, admitted or denied.
]]

local MAX_CAPACITY = '1000000000000000'
local MAX_PERIOD = '10000000000'
local MAX_TOKENS = '9223372036854775807'
local U64_MAX = '18446744073709551615'
-- capacity * period at most this: capacity*period*1000 ticks, plus a
-- capacity or two of rounding, stays below 2^53.
local MAX_CAPACITY_TIMES_PERIOD = 8000000000000
local MAX_BUCKETS = 32

local E_NOT_BUCKET = 'ERR the key holds a string that is not a redis-shield bucket'
local E_BAD_EXPIRY =
    "ERR the bucket key's expiry was changed outside redis-shield; refusing to guess its state"
local E_WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'
local E_RANGE = 'ERR capacity times period is out of range for the redis-shield Functions '
    .. 'library (at most 8000000000000; load the module for more)'

local function fail(msg)
    return redis.error_reply(msg)
end

local function arity(command)
    return fail("ERR wrong number of arguments for '" .. command .. "' command")
end

-- An integer below 2^53, in decimal (tostring would write 1e+15).
local function fmt(n)
    return string.format('%.0f', n)
end

-- floor(a / b) for integers a >= 0, b > 0 with a + b < 2^53, exactly.
local function idiv(a, b)
    local q = math.floor(a / b)
    while q * b > a do
        q = q - 1
    end
    while (q + 1) * b <= a do
        q = q + 1
    end
    return q
end

-- ceil(a / b), same conditions.
local function idiv_ceil(a, b)
    return idiv(a + b - 1, b)
end

-- Digit strings without leading zeros: a <= b (byte order, no locale).
local function digits_le(a, b)
    if #a ~= #b then
        return #a < #b
    end
    for i = 1, #a do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then
            return x < y
        end
    end
    return true
end

-- The module's parse_positive: a canonical decimal integer >= 1, at most
-- max (a digit string). Returns the digits, or nil and the error.
local function parse_positive(name, s, max)
    -- The usual case: fewer digits than the maximum, no leading zero.
    if #s < #max and string.find(s, '^[1-9]%d*$') then
        return s
    end
    local first = string.byte(s, 1)
    if first == nil or first < 49 or first > 57 or string.find(s, '[^0-9]') then
        return nil, fail('ERR ' .. name .. ' is not a positive integer')
    end
    if #s > 19 or not digits_le(s, max) then
        return nil, fail('ERR ' .. name .. ' is out of range (1 to ' .. max .. ')')
    end
    return s
end

-- The module's parse_bucket, then this library's own range. Returns the
-- limit {c, p (ticks per token), b (ticks of a full bucket)} and tokens
-- (nil when not given, 2^53 when above any capacity).
local function parse_bucket(capacity, period, tokens)
    local c, e = parse_positive('capacity', capacity, MAX_CAPACITY)
    if not c then
        return nil, nil, e
    end
    local p
    p, e = parse_positive('period', period, MAX_PERIOD)
    if not p then
        return nil, nil, e
    end
    local t = 1
    if tokens ~= nil then
        t, e = parse_positive('tokens', tokens, MAX_TOKENS)
        if not t then
            return nil, nil, e
        end
        -- Above 15 digits a count exceeds every capacity this library takes.
        t = (#t > 15) and 9007199254740992 or tonumber(t)
    end
    c, p = tonumber(c), tonumber(p)
    -- Both are exact (<= 10^15); the product is exact when it is in range.
    if c * p > MAX_CAPACITY_TIMES_PERIOD then
        return nil, nil, fail(E_RANGE)
    end
    return { c = c, p = p * 1000, b = c * p * 1000 }, t
end

-- parse_digits of the engine: one or more ASCII digits (leading zeros
-- allowed) fitting a u64. Returns them without leading zeros, or nil.
local function u64_digits(s)
    if s == '' or string.find(s, '[^0-9]') then
        return nil
    end
    s = string.gsub(s, '^0+', '')
    if s == '' then
        s = '0'
    end
    if #s > 20 or not digits_le(s, U64_MAX) then
        return nil
    end
    return s
end

-- Exact naturals in base 10^7, least significant limb first.
local BASE = 10000000

local function big_from_digits(s)
    local limbs = {}
    local i = #s
    while i >= 1 do
        local j = math.max(1, i - 6)
        limbs[#limbs + 1] = tonumber(string.sub(s, j, i))
        i = j - 1
    end
    return limbs
end

local function big_mul(a, b)
    local out = {}
    for i = 1, #a + #b do
        out[i] = 0
    end
    for i = 1, #a do
        local carry = 0
        for j = 1, #b do
            -- < 10^14 + 10^7 + 10^7: exact.
            local x = out[i + j - 1] + a[i] * b[j] + carry
            carry = idiv(x, BASE)
            out[i + j - 1] = x - carry * BASE
        end
        local k = i + #b
        while carry > 0 do
            local x = out[k] + carry
            carry = idiv(x, BASE)
            out[k] = x - carry * BASE
            k = k + 1
        end
    end
    while #out > 1 and out[#out] == 0 do
        out[#out] = nil
    end
    return out
end

local function big_le(a, b)
    if #a ~= #b then
        return #a < #b
    end
    for i = #a, 1, -1 do
        if a[i] ~= b[i] then
            return a[i] < b[i]
        end
    end
    return true
end

-- floor(r * c / d) for digit strings r < d and a capacity c: the remainder
-- r/d ms in ticks of 1/c ms, rounded to a later moment (fewer ticks before
-- the expiry), as the engine converts it.
local function convert_remainder(r, d, c)
    if r == '0' then
        return 0
    end
    if d == fmt(c) then
        return tonumber(r)
    end
    local rc = big_mul(big_from_digits(r), big_from_digits(fmt(c)))
    local dd = big_from_digits(d)
    -- The largest q in [0, c - 1] with q * d <= r * c.
    local lo, hi = 0, c - 1
    while lo < hi do
        local mid = lo + idiv(hi - lo + 1, 2)
        if big_le(big_mul(big_from_digits(fmt(mid)), dd), rc) then
            lo = mid
        else
            hi = mid - 1
        end
    end
    return lo
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end

-- The bucket stored at `key`, read with limit `l` at `now`:
--   {def = ticks missing from full (0..b+c), legacy = must be stored}
--   {over = true, d = ms until the expiry, r = ticks before it}: a deficit
--     above the burst (the clock went back, or another limit wrote it).
-- Or nil and the error.
local function read(key, l, now)
    -- GET fails only on a key of another type: no TYPE call first.
    local v = redis.pcall('GET', key)
    if not v then
        return { def = 0 }
    end
    if type(v) == 'table' then
        if v.err and string.sub(v.err, 1, 9) == 'WRONGTYPE' then
            return nil, fail(E_WRONGTYPE)
        end
        return nil, v
    end
    if string.byte(v, 1) == 126 then -- '~': a 2.x value
        local rest = string.sub(v, 2)
        local ticks_before = 0
        local slash = string.find(rest, '/', 1, true)
        if slash then
            local r = u64_digits(string.sub(rest, 1, slash - 1))
            local d = u64_digits(string.sub(rest, slash + 1))
            if not r or not d or digits_le(d, r) then
                return nil, fail(E_NOT_BUCKET)
            end
            ticks_before = convert_remainder(r, d, l.c)
        elseif not u64_digits(rest) then
            return nil, fail(E_NOT_BUCKET)
        end
        -- A `~r` without denominator (pre-release 2.0) is read as `~0`.
        local expire = redis.call('PEXPIRETIME', key)
        if expire < 0 then
            return nil, fail(E_BAD_EXPIRY)
        end
        local d = expire - now
        if d <= 0 then
            return { def = 0 }
        end
        if d > l.p + 1 then
            return { over = true, d = d, r = ticks_before }
        end
        return { def = d * l.c - ticks_before }
    end
    -- A 1.x value: tokens left now, clamped to 0..capacity.
    local negative = string.byte(v, 1) == 45 -- '-'
    local digits = u64_digits(negative and string.sub(v, 2) or v)
    -- A count beyond any capacity (10^15) is not a 1.x bucket (a
    -- CL.THROTTLE TAT in nanoseconds would read as a full bucket).
    if not digits or not digits_le(digits, "1000000000000000") then
        return nil, fail(E_NOT_BUCKET)
    end
    local left
    if negative then
        left = 0
    elseif digits_le(fmt(l.c), digits) then
        left = l.c
    else
        left = tonumber(digits)
    end
    local missing = l.c - left
    return { def = missing * l.p, legacy = missing > 0 }
end

local function tokens_left(st, l)
    if st.over or st.def >= l.b then
        return 0
    end
    return idiv(l.b - st.def, l.p)
end

local function ms_until_full(st, l)
    if st.over then
        return st.d
    end
    return idiv_ceil(st.def, l.c)
end

-- ms until `t` whole tokens are there, rounded up; nil: never (t > c).
local function ms_until_available(st, l, t)
    if t > l.c then
        return nil
    end
    local allowed = (l.c - t) * l.p
    if st.over then
        -- ceil((d*c - r - allowed) / c) = d - floor((r + allowed) / c)
        return math.max(0, st.d - idiv(st.r + allowed, l.c))
    end
    if st.def <= allowed then
        return 0
    end
    return idiv_ceil(st.def - allowed, l.c)
end

-- The deficit after taking t tokens, or nil when denied.
local function take(st, l, t)
    if t > tokens_left(st, l) then
        return nil
    end
    return st.def + t * l.p
end

-- Stores a deficit (> 0) as the module does: SET key value PXAT ms.
local function store(key, def, l, now)
    local ms = idiv_ceil(def, l.c)
    local rem = ms * l.c - def
    local value = '~0'
    if rem ~= 0 then
        value = '~' .. fmt(rem) .. '/' .. fmt(l.c)
    end
    redis.call('SET', key, value, 'PXAT', fmt(now + ms))
end

local function is_withdetails(s)
    return string.upper(s) == 'WITHDETAILS'
end

-- The usual call, straight through: `shield_absorb 1 key capacity period
-- [tokens]` with short canonical numbers in range, on a missing key or a
-- `~0` bucket that is not above its burst. The same arithmetic as
-- read/take/store/tokens_left below, specialised (no tables, no conversion
-- of the stored value), so that the library costs less than a hand-rolled
-- Lua limiter. Returns nil whenever the call is anything else, before
-- writing anything: the general path then answers it from the start.
-- tests/functions.rs checks both paths against the module's engine (random
-- calls, remainders, 1.x values, every error).
--
-- The clock: Redis 7.2+ and Valkey (REDIS_VERSION_NUM 7.2.4) freeze the
-- command's time for the whole FCALL, and PTTL and SET ... PX both count
-- from that one instant: the ms until the bucket is full are read and
-- written relative to it, without TIME (SET ... PX is propagated as SET ...
-- PXAT, the module's bytes). Redis 7.0 reads the clock afresh in every
-- command, so there the absolute times are used, with TIME.
-- Integer format: '%d' (C long) is exact for every integer used here on a
-- 64-bit server, and cheaper than '%.0f' (fmt stays the general one). Set
-- by the first call: the standard libraries are not there while loading.
local ifmt
-- The last limit this path validated (argument strings and their values):
-- callers send the same few limits, and comparing interned strings is
-- cheaper than validating them again. Only a cache: the answer is the same.
local last_cs, last_ps, last_c, last_p

local function absorb_usual(key, cs, ps, ts)
    local c, p, t = last_c, last_p, 1
    if cs ~= last_cs or ps ~= last_ps then
        if not ifmt then
            ifmt = (string.format('%d', 2 ^ 53) == '9007199254740992') and '%d' or '%.0f'
        end
        c, p = tonumber(cs), tonumber(ps)
        -- Canonical positive integers of at most 15 (capacity) and 10
        -- (period) digits: tonumber takes more ('1e3', ' 5', '0x1A', '05'),
        -- but none of those prints back as itself. NaN fails too.
        if not c or not p or not (c >= 1 and c < 1e15 and p >= 1 and p < 1e10)
            or c * p > MAX_CAPACITY_TIMES_PERIOD
            or string.format(ifmt, c) ~= cs or string.format(ifmt, p) ~= ps then
            return nil
        end
        last_cs, last_ps, last_c, last_p = cs, ps, c, p
    end
    if ts then
        t = tonumber(ts)
        if not t or not (t >= 1 and t < 1e15) or string.format(ifmt, t) ~= ts then
            return nil
        end
    end
    local v = redis.pcall('GET', key)
    if v and v ~= '~0' then
        return nil
    end
    local frozen = redis.REDIS_VERSION_NUM >= 0x070200
    local per = p * 1000 -- ticks of a token; also the period in ms
    local now, d = 0, 0 -- d: ms until the bucket is full
    if not frozen then
        local time = redis.call('TIME')
        -- Microseconds < 10^6: the double division floors exactly.
        now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    if v then
        -- Negative: no expiry (-1), the general path's error.
        d = redis.call(frozen and 'PTTL' or 'PEXPIRETIME', key)
        if d < 0 then
            return nil
        end
        if not frozen then
            d = d - now
        end
        -- Above the burst: the general path's case.
        if d > per + 1 then
            return nil
        end
    end
    local after = t * per -- ticks missing from full once t are taken
    if d > 0 then
        after = after + d * c
    end
    local full = c * per
    if after > full then
        return -1
    end
    -- ceil(after / c) and floor((full - after) / per) inline (the hot path
    -- of idiv): the double quotient is at most 1 off, then corrected.
    local ms = math.ceil(after / c)
    if ms * c < after then
        ms = ms + 1
    elseif ms * c - after >= c then
        ms = ms - 1
    end
    local rem = ms * c - after
    local value = rem == 0 and '~0' or ('~' .. string.format(ifmt, rem) .. '/' .. cs)
    if frozen then
        redis.call('SET', key, value, 'PX', string.format(ifmt, ms))
    else
        redis.call('SET', key, value, 'PXAT', string.format(ifmt, now + ms))
    end
    local room = full - after
    local left = math.floor(room / per)
    if left * per > room then
        left = left - 1
    elseif (left + 1) * per <= room then
        left = left + 1
    end
    return left
end

local function absorb(keys, args)
    local n = #args
    if #keys ~= 1 or n < 2 or n > 4 then
        return arity('SHIELD.absorb')
    end
    if n == 2 or (n == 3 and string.byte(args[3], 1) ~= 87 and string.byte(args[3], 1) ~= 119) then
        local left = absorb_usual(keys[1], args[1], args[2], args[3])
        if left then
            return left
        end
    end
    local tokens, details = nil, false
    if #args == 3 then
        if is_withdetails(args[3]) then
            details = true
        else
            tokens = args[3]
        end
    elseif #args == 4 then
        if not is_withdetails(args[4]) then
            return fail('ERR syntax error: the only option after tokens is WITHDETAILS')
        end
        tokens, details = args[3], true
    end
    local l, t, e = parse_bucket(args[1], args[2], tokens)
    if not l then
        return e
    end
    local key = keys[1]
    local now = now_ms()
    local st
    st, e = read(key, l, now)
    if not st then
        return e
    end
    local after = take(st, l, t)
    if after then
        store(key, after, l, now)
        local left = tokens_left({ def = after }, l)
        if details then
            return { 1, left, 0, ms_until_full({ def = after }, l) }
        end
        return left
    end
    if st.legacy then
        store(key, st.def, l, now)
    end
    if details then
        local retry = ms_until_available(st, l, t) or -1
        return { 0, tokens_left(st, l), retry, ms_until_full(st, l) }
    end
    return -1
end

local function inspect(keys, args)
    if #keys ~= 1 or #args ~= 2 then
        return arity('SHIELD.inspect')
    end
    local l, _, e = parse_bucket(args[1], args[2], nil)
    if not l then
        return e
    end
    local st
    st, e = read(keys[1], l, now_ms())
    if not st then
        return e
    end
    local left = tokens_left(st, l)
    local next_token = 0
    if left < l.c then
        next_token = ms_until_available(st, l, left + 1)
    end
    return { left, l.c, next_token, ms_until_full(st, l) }
end

local function absorb_all(keys, args)
    local n = #keys
    if n == 0 or #args ~= 3 * n then
        return arity('SHIELD.absorball')
    end
    if n > MAX_BUCKETS then
        return fail('ERR too many buckets: at most ' .. MAX_BUCKETS .. ' per call')
    end
    -- Every argument is validated before any key is read.
    local limits, tokens = {}, {}
    for i = 1, n do
        local l, t, e = parse_bucket(args[3 * i - 2], args[3 * i - 1], args[3 * i])
        if not l then
            return e
        end
        for j = 1, i - 1 do
            if keys[j] == keys[i] then
                return fail('ERR the same key appears more than once in one call')
            end
        end
        limits[i], tokens[i] = l, t
    end
    local now = now_ms()
    local states, afters, admitted = {}, {}, true
    for i = 1, n do
        local st, e = read(keys[i], limits[i], now)
        if not st then
            return e
        end
        states[i] = st
        afters[i] = take(st, limits[i], tokens[i]) or false
        admitted = admitted and afters[i] ~= false
    end
    local left, short, retry = {}, {}, 0
    for i = 1, n do
        local l, st = limits[i], states[i]
        if admitted then
            store(keys[i], afters[i], l, now)
            left[i] = tokens_left({ def = afters[i] }, l)
        else
            if st.legacy then
                store(keys[i], st.def, l, now)
            end
            left[i] = tokens_left(st, l)
            if not afters[i] then
                short[#short + 1] = keys[i]
            end
            local wait = ms_until_available(st, l, tokens[i])
            if wait == nil or retry == -1 then
                retry = -1
            else
                retry = math.max(retry, wait)
            end
        end
    end
    return { admitted and 1 or 0, retry, left, short }
end

redis.register_function { function_name = 'shield_absorb', callback = absorb }
redis.register_function {
    function_name = 'shield_inspect',
    callback = inspect,
    flags = { 'no-writes' },
}
redis.register_function { function_name = 'shield_absorball', callback = absorb_all }
