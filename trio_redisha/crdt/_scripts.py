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

__all__ = [
    "COUNTER_MERGE",
    "ENTRIES",
    "FOREIGN_CODE",
    "LWW_MERGE",
    "MARKERS",
    "NAMES",
    "PURGE",
    "REHASH",
    "SEGMENTS",
    "SWEEP",
    "UNDIGESTED",
]

#: First word of the error reply a script sends when the key is not ours.
FOREIGN_CODE = "REDISHA_FOREIGN"

#: The markers of this version's types (``__redisha__``): a hash with another
#: marker (a later version's, or a look-alike) is foreign, and no script that
#: sweeps or rehashes keys may write to it.
MARKERS: tuple[bytes, ...] = (b"counter:1", b"map:1", b"set:1")
_KNOWN = "local KNOWN = {" + ", ".join(f"['{m.decode()}'] = true" for m in MARKERS) + "}\n"
_OURS = (
    _KNOWN
    + r"""

-- Whether k holds a CRDT of this version (a hash with one of our markers).
local function ours(k)
  if redis.call('TYPE', k)['ok'] ~= 'hash' then return false end
  local m = redis.call('HGET', k, '__redisha__')
  return m and KNOWN[m] or false
end
"""
)

# The state of one call of a write script: upvalues of the helpers, set at the
# start of every call (_START) and never carried from one call to the next (a
# function library keeps its upvalues between calls). key, marker: KEYS[1],
# ARGV[1]; fresh: whether the key is new (load() found nothing); the field,
# value pairs run from ARGV[first] to ARGV[last] (see load()), and one more
# argument after them is the pack: the hash of each pair's field and value (as
# fnum), 13 hex digits each, in order, from the client (so the script hashes
# only what it finds stored), used if its length is right; tree: KEYS[2], the
# key's digest tree (nil: none); d, stored: the digest (a number) as it goes,
# the digest as stored; pend, dels, pv: see _WRITE; sub: string.sub (Redis
# offers no library to a function library's top level).
_STATE = "key, marker, fresh, last, pack, tree, d, stored, pend, dels, pv, sub"
_START = r"""
key, marker, tree = KEYS[1], ARGV[1], KEYS[2]
fresh, last, pack = nil, #ARGV, nil
d, stored = nil, nil
pend, dels, pv = {}, {}, {}
sub = string.sub
"""

_PRELUDE = r"""

local function foreign(why)
  return redis.error_reply('REDISHA_FOREIGN ' .. why)
end

-- The one read of a write script: the marker, the stored digest, then the
-- stored value of `extra` (if given) and of every field ARGV[first],
-- ARGV[first + 2], ..., ARGV[last - 1], as got[1], got[2], got[3]... (false:
-- absent). HMGET answers a non-hash with WRONGTYPE, so the type is checked
-- only then (for the message). Answers nil and got, or the error reply when
-- the key is not ours. First sets last and pack: an odd count of arguments
-- from ARGV[first] on ends with the pack.
local function load(extra, first)
  if (last - first) % 2 == 0 then
    local p = ARGV[last]
    last = last - 1
    if #p == 13 * (last - first + 1) / 2 then pack = p end
  end
  local names = {}
  if extra then names[1] = extra end
  for i = first, last, 2 do names[#names + 1] = ARGV[i] end
  local n = #names
  local got = redis.pcall('HMGET', key, '__redisha__', '__redisha_digest__',
                          unpack(names, 1, math.min(n, 1000)))  -- within unpack's limit
  if got.err then
    local t = redis.call('TYPE', key)['ok']
    if t ~= 'hash' then return foreign('the key holds a Redis ' .. t) end
    return got
  end
  for i = 1001, n, 1000 do
    local more = redis.call('HMGET', key, unpack(names, i, math.min(i + 999, n)))
    for j = 1, #more do got[#got + 1] = more[j] end
  end
  local m = got[1]
  if m == marker then return nil, got end
  if m then return foreign('the key holds a trio-redisha ' .. m .. ', not a ' .. marker) end
  if redis.call('EXISTS', key) == 1 then
    return foreign('the key is a hash without the trio-redisha marker')
  end
  fresh = true
  return nil, got
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
"""

# A key's digest, shared by every script that computes one (the Python twin is
# _storage.state_digest): the sum, modulo 2**52, of a 52-bit hash of each
# field, written as 16 hex digits. The hash of a field is the first 52 bits of
# SHA-1 of '<len(name)>:<name><value>' with NUL bytes in front, as many as
# bring the length to 55 modulo 64: SHA-1 then needs no padding block of its
# own, and Redis's SHA-1 pads byte by byte (this halves the cost of a hash;
# the NULs stay unambiguous, a length starts with a digit). A sum rather than
# a XOR of two 32-bit words: Lua numbers hold 52 bits exactly, so the arithmetic
# needs no bit library calls.
_HASH = (
    r"""
local DIGEST = '__redisha_digest__'
local M = 4503599627370496  -- 2^52
local PAD = '"""
    + "\\0" * 63  # a Lua string of 63 NUL bytes, made once when the script loads
    + r"""'

-- The padding of each length and the '<len(name)>:' of each short name,
-- made once each (a function library keeps them from call to call): a fourth
-- of what a hash costs the script. Bounded: 64 paddings, 100 prefixes.
local PADS, LENS = {}, {}

-- The hash of field f holding v, a number below 2^52.
local function fnum(f, v)
  local n = #f
  local len = #v + n + (n < 10 and 2 or n < 100 and 3 or #tostring(n) + 1)
  local k = (55 - len) % 64
  local pad = PADS[k]
  if not pad then
    pad = sub(PAD, 1, k)
    PADS[k] = pad
  end
  local head = LENS[n]
  if not head then
    head = n .. ':'
    if n < 100 then LENS[n] = head end
  end
  return tonumber(sub(redis.sha1hex(pad .. head .. f .. v), 1, 13), 16)
end

-- The digest of a hash computed from all of its fields (data from before digests).
local function full(k)
  local all = redis.call('HGETALL', k)
  local d = 0
  for j = 1, #all, 2 do
    if all[j] ~= DIGEST then d = (d + fnum(all[j], all[j + 1])) % M end
  end
  return string.format('%016x', d)
end
"""
)

# The digest tree, shared by the scripts that read or sweep it (see
# trio_redisha.crdt._digest). A segment's digest is 64 bits, 16 hex digits:
# the XOR of the first 64 bits of SHA-1 of each entry, in two 32-bit words.
_DIGEST = (
    "local sub = string.sub\n"
    + _HASH
    + _OURS
    + r"""
local ZERO = '0000000000000000'
local bxor, tohex = bit.bxor, bit.tohex
local tree = KEYS[2]

-- The words of a segment digest (nil: zero).
local function hi(h) if h then return tonumber(sub(h, 1, 8), 16) end return 0 end
local function lo(h) if h then return tonumber(sub(h, 9, 16), 16) end return 0 end
local function hex(a, b) return tohex(a, 8) .. tohex(b, 8) end

-- Set the tree's entry of key k to its digest d (false: k is gone).
local function enter(k, d)
  if d then redis.call('HSET', tree, 'k' .. k, d) else redis.call('HDEL', tree, 'k' .. k) end
end

-- A segment's digest: the XOR of a hash of each entry's key and digest (the
-- key is mixed in so that keys holding the same state do not cancel out).
-- Computed when compared, not kept: a write then costs one HSET on the tree.
local function segment(t)
  local all = redis.call('HGETALL', t)
  local a, b = 0, 0
  for j = 1, #all, 2 do
    local f = all[j]
    if sub(f, 1, 1) == 'k' then
      local h = redis.sha1hex(sub(f, 2) .. all[j + 1])
      a, b = bxor(a, hi(h)), bxor(b, lo(h))
    end
  end
  return hex(a, b)
end
"""
)

# What a write script does to keep the digest: every field written or deleted
# goes through setf/delf, which move the digest by delta (the stored values
# come from load(), so a field written for the first time costs one hash and
# an overwrite two); the changes go out in one HDEL and one HSET with the new
# digest (flush), and finish() sets the key's entry in the tree (KEYS[2]) when
# the script was given it. One write in 4 that sets an expiry (by two bits of
# the new digest, so replicas agree) also probes 12 random index entries of
# the tree and drops those whose key is gone: three probes per such write on
# average (see trio_redisha.crdt._digest).
_WRITE = r"""
-- pend: the field, value pairs to write; dels: the fields to delete; pv: the
-- value each field written or deleted so far now holds (false: deleted).

-- Start the digest from what load() found.
local function begin(got)
  if fresh then
    d = fnum('__redisha__', marker)
    pend[1], pend[2] = '__redisha__', marker
    return
  end
  stored = got[2] or nil
  -- Data from before digests (or of another digest format): from every field.
  d = stored and sub(stored, 1, 3) == '000' and tonumber(stored, 16)
  if not d then d = tonumber(full(key), 16) end
end

-- A field's value as this script left it so far (got[j]: as loaded).
local function getf(f, got, j)
  local v = pv[f]
  if v ~= nil then return v end
  return got[j]
end

-- The hash of pair number p (from 0: ARGV[first + 2p] and the value after
-- it), f holding v: from the pack if the client sent one, else computed.
local function given(p, f, v)
  if pack and p then
    local h = tonumber(sub(pack, 13 * p + 1, 13 * p + 13), 16)
    if h then return h end
  end
  return fnum(f, v)
end

-- Write v to field f, which held old (nil: absent); p: the pair it came from.
local function setf(f, v, old, p)
  if old then
    d = (d + given(p, f, v) - fnum(f, old)) % M
  else
    d = (d + given(p, f, v)) % M
  end
  pend[#pend + 1] = f
  pend[#pend + 1] = v
  pv[f] = v
end

-- Delete field f, which held old; p: the pair that named it (if old is its value).
local function delf(f, old, p)
  d = (d - given(p, f, old)) % M
  dels[#dels + 1] = f
  pv[f] = false
end

-- Write what is pending (deletions first) and the digest; answers the digest.
local function flush()
  local hex = string.format('%016x', d)
  if hex ~= stored then
    pend[#pend + 1] = DIGEST
    pend[#pend + 1] = hex
    stored = hex
  end
  for i = 1, #dels, 1000 do  -- within unpack's limit
    redis.call('HDEL', key, unpack(dels, i, math.min(i + 999, #dels)))
  end
  for i = 1, #pend, 1000 do  -- pairs stay whole
    redis.call('HSET', key, unpack(pend, i, math.min(i + 999, #pend)))
  end
  pend, dels = {}, {}
  return hex
end

-- ttl: the expiry to set, in ms ('0': leave it). Sets it after the write.
local function finish(ttl)
  local hex = flush()
  if ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
  if not tree then return end
  redis.call('HSET', tree, 'k' .. key, hex)
  if ttl ~= '0' and d % 4 == 0 then
    local some = redis.call('HRANDFIELD', tree, 12)
    for j = 1, #some do
      local f = some[j]
      if redis.call('EXISTS', sub(f, 2)) == 0 then redis.call('HDEL', tree, f) end
    end
  end
end
"""


def _write_script(helpers: str, body: str) -> Script:
    """A write script from its helpers and its body, with its library form.

    Both forms run the same Lua: the helpers once (for each ``EVAL``, or when
    the library loads), then, for each call, ``_START`` and the body.
    """
    return Script(
        f"local KEYS, ARGV = KEYS, ARGV\nlocal {_STATE}\n{helpers}{_START}{body}",
        f"local KEYS, ARGV\nlocal {_STATE}\n{helpers}\n"
        f"local function main(keys, args)\nKEYS, ARGV = keys, args\n{_START}{body}\nend\n",
    )


#: Merge per-actor counter totals by maximum.
#:
#: ``KEYS[1]``: the key; optionally ``KEYS[2]``: its segment's digest tree
#: (:func:`~trio_redisha.crdt._digest.script_keys`).
#: ``ARGV``: marker, expiry in ms (``0``: leave it), then ``field, total``
#: pairs, then optionally their pack (:func:`~trio_redisha.crdt._storage.hash_pack`:
#: the script then hashes only the stored values it replaces). Answers the
#: stored total of each given field after the merge (what the writer must
#: never go below).
_COUNTER_MERGE_BODY = r"""
local why, got = load(nil, 3)
if why then return why end
begin(got)
local out = {}
for i = 3, last, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local cur = getf(f, got, (i + 3) / 2)
  if decimal(v) and (not cur or not decimal(cur) or numcmp(v, cur) > 0) then
    setf(f, v, cur, (i - 3) / 2)
    cur = v
  end
  out[#out + 1] = cur or '0'
end
finish(ARGV[2])
return out
"""
COUNTER_MERGE = _write_script(_PRELUDE + _HASH + _WRITE, _COUNTER_MERGE_BODY)

# The LWW script's own helpers.
_LWW_HELPERS = r"""
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

-- Whether the key holds a live register: one that is not a tombstone and
-- that the clear stamp (clear, parsed) does not kill.
local function live(clear)
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    local g = all[j]
    if g ~= 'c:' and g ~= '__redisha__' and g ~= DIGEST then
      local r = parse(all[j + 1])
      if r and sub(r[3], 1, 1) == '+' and (not clear or cmp(r, clear) > 0) then
        return true
      end
    end
  end
  return false
end
"""

#: Merge last-writer-wins registers (map fields, set members) and clear stamps.
#:
#: ``KEYS[1]``: the key; optionally ``KEYS[2]``: its segment's digest tree.
#: ``ARGV``: marker, expiry in ms (``0``: leave it), then ``field,
#: register`` pairs, each register ``<ts>:<actor>:<flag><payload>``, then
#: optionally their pack. A register replaces the stored one only if it is
#: larger in the one order: timestamp, then actor, then flag and payload; and
#: it is refused if the stored clear stamp (field ``c:``) is not smaller than
#: it. A clear stamp ``<ts>:<actor>:-`` under ``c:`` replaces a smaller
#: stored one and then deletes every field holding a register it kills.
#: Answers how many fields changed (written or deleted). A first pair
#: ``x:, 1`` (never stored) makes the write conditional: on a key absent
#: (expired, never written) or cleared with no live register since, nothing
#: is written, the expiry is left, and the answer is ``GONE`` (absent) or
#: ``CLEARED``. Only a key
#: holding a clear stamp is scanned; one whose fields were all deleted one by
#: one, without a clear, still takes the write.
_LWW_MERGE_BODY = r"""
local why, got = load('c:', 3)
if why then return why end
if ARGV[3] == 'x:' then
  if fresh then return 'GONE' end
  if got[3] and not live(parse_clear(got[3])) then return 'CLEARED' end
end
begin(got)
local rawclear = got[3]
local clear = parse_clear(rawclear)
local changed = 0
for i = 3, last, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  local new = parse(v)
  if f == 'c:' then
    new = parse_clear(v)
    if new and (not clear or cmp(new, clear) > 0) then
      setf(f, v, rawclear, (i - 3) / 2)
      rawclear = v
      clear = new
      changed = changed + 1
      -- Delete what it kills: every register not larger than the stamp.
      flush()
      local all = redis.call('HGETALL', key)
      for j = 1, #all, 2 do
        local g = all[j]
        if g ~= 'c:' and g ~= '__redisha__' and g ~= DIGEST then
          local old = parse(all[j + 1])
          if old and cmp(old, clear) <= 0 then
            delf(g, all[j + 1])
            changed = changed + 1
          end
        end
      end
    end
  elseif new and (not clear or cmp(new, clear) > 0) then
    local cur = getf(f, got, (i + 5) / 2)
    local old = cur and parse(cur)
    if not old or cmp(new, old) > 0 then
      setf(f, v, cur, (i - 3) / 2)
      changed = changed + 1
    end
  end
end
finish(ARGV[2])
return changed
"""
LWW_MERGE = _write_script(_PRELUDE + _HASH + _WRITE + _LWW_HELPERS, _LWW_MERGE_BODY)

#: Purge tombstones whose grace period is over.
#:
#: ``KEYS[1]``: the key; optionally ``KEYS[2]``: its segment's digest tree.
#: ``ARGV``: marker, then ``field, register`` pairs, then optionally their
#: pack; a field is deleted only if it still holds exactly that register (a
#: newer write since the read is kept). A hash left with nothing but its
#: marker (and digest) is deleted. Answers how many fields were deleted.
_PURGE_BODY = r"""
local why, got = load(nil, 2)
if why then return why end
if fresh then return 0 end
begin(got)
local n = 0
for i = 2, last, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if f ~= DIGEST and f ~= '__redisha__' and getf(f, got, (i + 4) / 2) == v then
    delf(f, v, (i - 2) / 2)
    n = n + 1
  end
end
flush()
if redis.call('HLEN', key) - redis.call('HEXISTS', key, DIGEST) <= 1 then
  redis.call('DEL', key)
  if tree then redis.call('HDEL', tree, 'k' .. key) end
  return n
end
finish('0')
return n
"""
PURGE = _write_script(_PRELUDE + _HASH + _WRITE, _PURGE_BODY)

# The same write scripts without digests or tree: only to measure what keeping
# them costs (benchmarks/bench_crdt.py, benchmarks/bench_scripts.py). The same
# reads and writes, less the digest's arithmetic, its field and the tree entry.
# Never used to write data.
_PLAIN = r"""
local DIGEST = '__redisha_digest__'
local function begin(got)
  if fresh then pend[1], pend[2] = '__redisha__', marker end
end
local function getf(f, got, j)
  local v = pv[f]
  if v ~= nil then return v end
  return got[j]
end
local function setf(f, v, old)
  pend[#pend + 1] = f
  pend[#pend + 1] = v
  pv[f] = v
end
local function delf(f, old)
  dels[#dels + 1] = f
  pv[f] = false
end
local function flush()
  for i = 1, #dels, 1000 do
    redis.call('HDEL', key, unpack(dels, i, math.min(i + 999, #dels)))
  end
  for i = 1, #pend, 1000 do
    redis.call('HSET', key, unpack(pend, i, math.min(i + 999, #pend)))
  end
  pend, dels = {}, {}
end
local function finish(ttl)
  flush()
  if ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
end
"""

#: Name to the write script without digests (for the write-cost benchmarks only).
PLAIN_SCRIPTS: dict[str, Script] = {
    name: _write_script(_PRELUDE + _PLAIN + helpers, body)
    for name, helpers, body in (
        ("COUNTER_MERGE", "", _COUNTER_MERGE_BODY),
        ("LWW_MERGE", _LWW_HELPERS, _LWW_MERGE_BODY),
        ("PURGE", "", _PURGE_BODY),
    )
}

#: (Re)compute the digest of one key from all its fields, and its tree entry.
#:
#: ``KEYS``: the key and its segment's digest tree. No ``ARGV``. For data
#: written before digests existed, or changed without the scripts. A key that
#: is absent or not a trio-redisha hash leaves the index (nothing else is
#: touched). Answers the key's digest, or nil.
REHASH = Script(
    _DIGEST
    + r"""
local key = KEYS[1]
local d = false
if ours(key) then
  d = full(key)
  if redis.call('HGET', key, DIGEST) ~= d then redis.call('HSET', key, DIGEST, d) end
end
enter(key, d)
return d
"""
)

#: Bring one segment's index in line with its keys: the anti-entropy cleanup.
#:
#: ``KEYS[1]``: the segment's digest tree. Every indexed key that expired, was
#: deleted or is no longer ours leaves the index; the others get their stored
#: digest (computed if missing). Answers the segment digest (all zeros: empty).
SWEEP = Script(
    r"""
KEYS[2] = KEYS[1]
"""
    + _DIGEST
    + r"""
local all = redis.call('HKEYS', tree)
for j = 1, #all do
  local f = all[j]
  if sub(f, 1, 1) == 'k' then
    local k = sub(f, 2)
    local d = false
    if ours(k) then
      d = redis.call('HGET', k, DIGEST)
      if not d then
        d = full(k)
        redis.call('HSET', k, DIGEST, d)
      end
    end
    enter(k, d)
  end
end
return segment(tree)
"""
)

#: Segment digests of one server, XOR-combined in groups.
#:
#: ``KEYS``: digest trees. ``ARGV``: the size of each group, in order, summing
#: to the number of keys. Answers one string: each group's digest (the XOR of
#: its segments' digests; all zeros for an empty group) as 8 bytes, big-endian,
#: in order. Binary and in one reply: 8 bytes a digest on the wire, not 23.
#: First, entries of keys that no longer exist (expired, deleted: what no
#: script saw) leave the index, so the digests compare what the servers hold.
SEGMENTS = Script(
    _DIGEST
    + r"""
local band, rshift, char = bit.band, bit.rshift, string.char

local function prune(t)
  local fields = redis.call('HKEYS', t)
  for j = 1, #fields do
    local f = fields[j]
    if sub(f, 1, 1) == 'k' and redis.call('EXISTS', sub(f, 2)) == 0 then
      redis.call('HDEL', t, f)
    end
  end
end

local out = {}
local i = 1
for g = 1, #ARGV do
  local a, b = 0, 0
  for _ = 1, tonumber(ARGV[g]) do
    prune(KEYS[i])
    local d = segment(KEYS[i])
    a, b = bxor(a, hi(d)), bxor(b, lo(d))
    i = i + 1
  end
  out[g] = char(band(rshift(a, 24), 255), band(rshift(a, 16), 255), band(rshift(a, 8), 255),
    band(a, 255), band(rshift(b, 24), 255), band(rshift(b, 16), 255), band(rshift(b, 8), 255),
    band(b, 255))
end
return table.concat(out)
"""
)

# An index entry's fingerprint, for comparing two segments entry by entry:
# the first 8 bytes of SHA-1 of key, a colon and digest (collisions between
# entries that differ: 2**-64 each).
_ENTRY = r"""
local function entry(k, d)
  local h = string.sub(redis.sha1hex(k .. ':' .. d), 1, 16)
  return (string.gsub(h, '..', function(x) return string.char(tonumber(x, 16)) end))
end
"""

#: The fingerprints of one segment's index entries, for a walk to compare.
#:
#: ``KEYS[1]``: the segment's digest tree. Answers one string of 8 bytes per
#: entry (see :data:`NAMES`), so that two servers' entries compare without
#: sending the keys' names, which are asked for only where they differ.
ENTRIES = Script(
    _ENTRY
    + r"""
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for j = 1, #all, 2 do
  local f = all[j]
  if string.sub(f, 1, 1) == 'k' then out[#out + 1] = entry(string.sub(f, 2), all[j + 1]) end
end
return table.concat(out)
"""
)

#: The keys of one segment's index entries that have the given fingerprints.
#:
#: ``KEYS[1]``: the segment's digest tree. ``ARGV[1]``: fingerprints (see
#: :data:`ENTRIES`), 8 bytes each. Answers each such key followed by its
#: fingerprint, flat, in no order.
NAMES = Script(
    _ENTRY
    + r"""
local want, s = {}, ARGV[1]
for j = 1, #s, 8 do want[string.sub(s, j, j + 7)] = true end
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for j = 1, #all, 2 do
  local f = all[j]
  if string.sub(f, 1, 1) == 'k' then
    local k = string.sub(f, 2)
    local e = entry(k, all[j + 1])
    if want[e] then
      out[#out + 1] = k
      out[#out + 1] = e
    end
  end
end
return out
"""
)

#: One page of a server-side ``SCAN`` for keys the digest tree does not know.
#:
#: No ``KEYS`` (it reads what ``SCAN`` finds, on one server, outside any
#: cluster). ``ARGV``: the cursor and the ``COUNT`` hint. Answers the next
#: cursor, how many hashes of ours the page held, the keys among them without
#: a digest (written before digests existed), and the hashes that are not
#: ours (no marker, or one of another version): so a walk over a fleet that
#: has neither costs only the cursors and counts on the wire.
UNDIGESTED = Script(
    _KNOWN
    + r"""
local page = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2], 'TYPE', 'hash')
local old, foreign, n = {}, {}, 0
for _, k in ipairs(page[2]) do
  if string.sub(k, 1, 13) ~= '__redisha__:t' then
    local got = redis.call('HMGET', k, '__redisha__', '__redisha_digest__')
    if got[1] and KNOWN[got[1]] then
      n = n + 1
      if not got[2] then old[#old + 1] = k end
    else
      foreign[#foreign + 1] = k
    end
  end
end
return {page[1], n, old, foreign}
"""
)
