"""The Lua scripts that write CRDT state on a server: check the type, merge, expire.

Each script runs atomically on one server and is safe to run any number of
times in any order: it compares every incoming field with the stored one and
only ever moves a field *forward* (a larger total, a later register), so a
write, its retry, its replay and a read repair all commute. Nothing is written
when the key holds anything but a trio-redisha hash of the expected type and
format version; the script then answers an error reply starting with
:data:`FOREIGN_CODE`, and the value is left untouched.

The comparisons here are the Lua spelling of the one order defined in
:mod:`trio_redisha.crdt._state`; :mod:`trio_redisha.crdt._storage` has a Python
twin of each script, and the tests check the three agree on arbitrary input.
Strings are compared byte by byte with ``string.byte`` and never with Lua's
``<``, which goes through ``strcoll`` and so depends on the server's locale.
"""

from __future__ import annotations

from ..scripts import Script

__all__ = ["COUNTER_MERGE", "FOREIGN_CODE", "LWW_MERGE", "PURGE"]

#: First word of the error reply a script sends when the key is not ours.
FOREIGN_CODE = "REDISHA_FOREIGN"

_PRELUDE = r"""
local key = KEYS[1]
local marker = ARGV[1]

-- nil: no key; false: our hash of this type; a string: why the key is foreign.
local function check()
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return nil end
  if t ~= 'hash' then return 'the key holds a Redis ' .. t end
  local m = redis.call('HGET', key, '__redisha__')
  if m == marker then return false end
  if not m then return 'the key is a hash without the trio-redisha marker' end
  return 'the key holds a trio-redisha ' .. m .. ', not a ' .. marker
end

local function foreign(why)
  return redis.error_reply('REDISHA_FOREIGN ' .. why)
end

-- Byte-wise comparison: -1, 0 or 1.
local function bytecmp(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  local n = la
  if lb < n then n = lb end
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  if la < lb then return -1 end
  return 1
end

-- A canonical non-negative decimal of at most 19 digits (as _state._DECIMAL).
local function decimal(s)
  return s == '0' or (#s <= 19 and string.find(s, '^[1-9][0-9]*$') ~= nil)
end

-- Numeric comparison of two canonical decimals, without Lua's doubles.
local function numcmp(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  return bytecmp(a, b)
end

local function expire()
  if ARGV[2] ~= '0' then redis.call('PEXPIRE', key, ARGV[2]) end
end
"""

#: Merge per-actor counter totals by maximum.
#:
#: ``KEYS[1]``: the key. ``ARGV``: marker, expiry in ms (``0``: leave it), then
#: ``field, total`` pairs. Answers the stored total of each given field after
#: the merge (what the writer must never go below).
COUNTER_MERGE = Script(
    _PRELUDE
    + r"""
local why = check()
if why then return foreign(why) end
if why == nil then redis.call('HSET', key, '__redisha__', marker) end
local out = {}
for i = 3, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local cur = redis.call('HGET', key, f)
  if decimal(v) and (not cur or not decimal(cur) or numcmp(v, cur) > 0) then
    redis.call('HSET', key, f, v)
    cur = v
  end
  out[#out + 1] = cur or '0'
end
expire()
return out
"""
)

#: Merge last-writer-wins registers (map fields, set members) and clear stamps.
#:
#: ``KEYS[1]``: the key. ``ARGV``: marker, expiry in ms (``0``: leave it), then
#: ``field, register`` pairs, each register ``<ts>:<actor>:<flag><payload>``.
#: A register replaces the stored one only if it is larger in the one order:
#: timestamp, then actor, then flag and payload; and it is refused if the
#: stored clear stamp (field ``c:``) is not smaller than it. A clear stamp
#: ``<ts>:<actor>:-`` under ``c:`` replaces a smaller stored one and then
#: deletes every field holding a register it kills. Answers how many fields
#: changed (written or deleted).
LWW_MERGE = Script(
    _PRELUDE
    + r"""
-- ts, actor, rest of a well-formed register, or nil (as _state._ENTRY_RE).
local function parse(e)
  local ts, actor, rest = string.match(e, '^([0-9]+):([^:]+):([+-].*)$')
  if ts == nil or not decimal(ts) then return nil end
  return {ts, actor, rest}
end

local function cmp(a, b)
  local c = numcmp(a[1], b[1])
  if c ~= 0 then return c end
  c = bytecmp(a[2], b[2])
  if c ~= 0 then return c end
  return bytecmp(a[3], b[3])
end

-- A well-formed clear stamp '<ts>:<actor>:-', or nil (as _state.is_clear_stamp).
local function parse_clear(e)
  if not e then return nil end
  local r = parse(e)
  if r and r[3] == '-' then return r end
  return nil
end

local why = check()
if why then return foreign(why) end
if why == nil then redis.call('HSET', key, '__redisha__', marker) end
local clear = parse_clear(redis.call('HGET', key, 'c:'))
local changed = 0
for i = 3, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local new = parse(v)
  if f == 'c:' then
    new = parse_clear(v)
    if new and (not clear or cmp(new, clear) > 0) then
      redis.call('HSET', key, f, v)
      clear = new
      changed = changed + 1
      -- Delete what it kills: every register not larger than the stamp.
      local all = redis.call('HGETALL', key)
      for j = 1, #all, 2 do
        local g = all[j]
        if g ~= 'c:' and g ~= '__redisha__' then
          local old = parse(all[j + 1])
          if old and cmp(old, clear) <= 0 then
            redis.call('HDEL', key, g)
            changed = changed + 1
          end
        end
      end
    end
  elseif new and (not clear or cmp(new, clear) > 0) then
    local cur = redis.call('HGET', key, f)
    local old = cur and parse(cur)
    if not old or cmp(new, old) > 0 then
      redis.call('HSET', key, f, v)
      changed = changed + 1
    end
  end
end
expire()
return changed
"""
)

#: Purge tombstones whose grace period is over.
#:
#: ``KEYS[1]``: the key. ``ARGV``: marker, then ``field, register`` pairs; a
#: field is deleted only if it still holds exactly that register (a newer write
#: since the read is kept). A hash left with nothing but its marker is deleted.
#: Answers how many fields were deleted.
PURGE = Script(
    _PRELUDE
    + r"""
local why = check()
if why == nil then return 0 end
if why then return foreign(why) end
local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('HGET', key, ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', key, ARGV[i])
    n = n + 1
  end
end
if redis.call('HLEN', key) <= 1 then redis.call('DEL', key) end
return n
"""
)
