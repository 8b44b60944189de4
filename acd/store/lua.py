"""Lua scripts of the Redis store: each runs atomically inside Redis.

Every script receives the key prefix as ARGV[1] and builds its key names from it, so the
store works on one Redis server (not Redis Cluster, where keys must be declared).
Numbers travel as strings; an empty string means "none".
"""

COMMON = r"""
local p = ARGV[1]
local function ekey(id) return p .. 'e:' .. id end
local function akey(id) return p .. 'a:' .. id end
local function wake() redis.call('PUBLISH', p .. 'wake', '1') end

-- Put an offered entry back into its waiting set with its original key.
local function release(eid, aid, missed, away_after)
  local e = ekey(eid)
  if redis.call('HGET', e, 'status') ~= 'offered' then return false end
  if redis.call('HGET', e, 'agent') ~= aid then return false end
  local q = redis.call('HGET', e, 'queue')
  local key = redis.call('HGET', e, 'key')
  redis.call('ZREM', p .. 'o:' .. q, eid)
  redis.call('ZADD', p .. 'w:' .. q, key, eid)
  redis.call('ZREM', p .. 'leases', eid)
  redis.call('HSET', e, 'status', 'waiting', 'agent', '', 'lease', '')
  if missed == 1 then
    local list = cjson.decode(redis.call('HGET', e, 'missed'))
    local seen = false
    for _, id in ipairs(list) do if id == aid then seen = true end end
    if not seen then
      table.insert(list, aid)
      redis.call('HSET', e, 'missed', cjson.encode(list))
    end
  end
  local a = akey(aid)
  local old = ''
  local agent = {}
  if redis.call('HGET', a, 'entry') == eid then
    old = redis.call('HGET', a, 'state')
    redis.call('HSET', a, 'state', 'available', 'entry', '')
    if missed == 1 then
      redis.call('HINCRBY', a, 'missed', 1)
      local row = redis.call('HINCRBY', a, 'missed_row', 1)
      if away_after > 0 and row >= away_after then
        redis.call('HSET', a, 'state', 'away', 'reason', 'missed_offers')
      end
    end
    agent = redis.call('HGETALL', a)
  end
  wake()
  return {redis.call('HGETALL', e), old, agent}
end

-- Take a waiting or offered entry out of the queue for good.
local function remove(eid)
  local e = ekey(eid)
  local status = redis.call('HGET', e, 'status')
  if status ~= 'waiting' and status ~= 'offered' then return false end
  local q = redis.call('HGET', e, 'queue')
  local owner = redis.call('HGET', e, 'owner')
  local aid = redis.call('HGET', e, 'agent')
  redis.call('ZREM', p .. 'w:' .. q, eid)
  redis.call('ZREM', p .. 'o:' .. q, eid)
  redis.call('ZREM', p .. 'leases', eid)
  redis.call('DEL', p .. 'call:' .. redis.call('HGET', e, 'call'))
  if owner ~= '' then redis.call('SREM', p .. 'ne:' .. owner, eid) end
  local freed = {}
  if status == 'offered' and aid ~= '' and redis.call('HGET', akey(aid), 'entry') == eid then
    redis.call('HSET', akey(aid), 'state', 'available', 'entry', '')
    freed = redis.call('HGETALL', akey(aid))
  end
  redis.call('HSET', e, 'status', 'left')
  local entry = redis.call('HGETALL', e)
  redis.call('DEL', e)
  wake()
  return {entry, freed}
end
"""

TRY_OFFER = r"""
local eid, aid = ARGV[2], ARGV[3]
local now, lease = tonumber(ARGV[4]), ARGV[5]
local e, a = ekey(eid), akey(aid)
if redis.call('HGET', e, 'status') ~= 'waiting' then return false end
local state = redis.call('HGET', a, 'state')
local free = state == 'available'
if state == 'wrap_up' and tonumber(redis.call('HGET', a, 'wrap')) <= now then free = true end
if not free then return false end
local q = redis.call('HGET', e, 'queue')
redis.call('ZREM', p .. 'w:' .. q, eid)
redis.call('ZADD', p .. 'o:' .. q, redis.call('HGET', e, 'key'), eid)
redis.call('ZADD', p .. 'leases', lease, eid)
redis.call('HSET', e, 'status', 'offered', 'agent', aid, 'lease', lease)
redis.call('HSET', a, 'state', 'offered', 'entry', eid)
return redis.call('HGETALL', e)
"""

CLAIM_BRIDGE = r"""
local eid, aid, now, ttl = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local e, a = ekey(eid), akey(aid)
if redis.call('HGET', e, 'status') ~= 'offered' then return false end
if redis.call('HGET', e, 'agent') ~= aid then return false end
if redis.call('HGET', a, 'state') ~= 'offered' or redis.call('HGET', a, 'entry') ~= eid then
  return false
end
local q = redis.call('HGET', e, 'queue')
local owner = redis.call('HGET', e, 'owner')
redis.call('ZREM', p .. 'o:' .. q, eid)
redis.call('ZREM', p .. 'leases', eid)
redis.call('DEL', p .. 'call:' .. redis.call('HGET', e, 'call'))
if owner ~= '' then redis.call('SREM', p .. 'ne:' .. owner, eid) end
redis.call('HSET', e, 'status', 'bridged', 'lease', '')
redis.call('EXPIRE', e, ttl)
redis.call('HSET', a, 'state', 'on_call', 'cqueue', q, 'cstart', now, 'missed_row', 0)
return redis.call('HGETALL', e)
"""

RELEASE = r"""
local expired_by = ARGV[6]
if expired_by ~= '' then
  local until_ = redis.call('ZSCORE', p .. 'leases', ARGV[2])
  if not until_ or tonumber(until_) > tonumber(expired_by) then return false end
end
return release(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
"""

REMOVE = r"""
return remove(ARGV[2])
"""

REMOVE_AGENT = r"""
local aid, node = ARGV[2], ARGV[3]
local a = akey(aid)
if redis.call('EXISTS', a) == 0 then return false end
if node ~= '' and redis.call('HGET', a, 'node') ~= node then return false end
local agent = redis.call('HGETALL', a)
local released = false
local eid = redis.call('HGET', a, 'entry')
if redis.call('HGET', a, 'state') == 'offered' and eid ~= '' then
  released = release(eid, aid, 0, 0)
end
redis.call('SREM', p .. 'agents', aid)
redis.call('SREM', p .. 'na:' .. redis.call('HGET', a, 'node'), aid)
redis.call('DEL', a)
wake()
return {agent, released}
"""

PUT_AGENT = r"""
local aid, node = ARGV[2], ARGV[3]
local a = akey(aid)
local old = redis.call('HGET', a, 'node')
if old then redis.call('SREM', p .. 'na:' .. old, aid) end
redis.call('DEL', a)
for i = 4, #ARGV, 2 do redis.call('HSET', a, ARGV[i], ARGV[i + 1]) end
redis.call('SADD', p .. 'agents', aid)
redis.call('SADD', p .. 'na:' .. node, aid)
wake()
return 1
"""

UPDATE_AGENT = r"""
local a = akey(ARGV[2])
local expected = cjson.decode(ARGV[3])
local state = redis.call('HGET', a, 'state')
if not state then return false end
local ok = false
for _, s in ipairs(expected) do if s == state then ok = true end end
if not ok then return false end
for i = 4, #ARGV, 2 do redis.call('HSET', a, ARGV[i], ARGV[i + 1]) end
wake()
return redis.call('HGETALL', a)
"""

FINISH_CALL = r"""
local a = akey(ARGV[2])
local now, wrap_s = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', a, 'state') ~= 'on_call' then return false end
local wrap = ARGV[5]
redis.call('HINCRBY', a, 'calls', 1)
redis.call('HSET', a, 'entry', '', 'wrap', wrap, 'idle', wrap)
if wrap_s > 0 then
  redis.call('HSET', a, 'state', 'wrap_up')
else
  redis.call('HSET', a, 'state', 'available')
end
wake()
return redis.call('HGETALL', a)
"""

POSITION = r"""
local eid = ARGV[2]
local e = ekey(eid)
local status = redis.call('HGET', e, 'status')
if status ~= 'waiting' and status ~= 'offered' then return false end
local q = redis.call('HGET', e, 'queue')
local key = redis.call('HGET', e, 'key')
local ahead = 0
for _, set in ipairs({p .. 'w:' .. q, p .. 'o:' .. q}) do
  ahead = ahead + redis.call('ZCOUNT', set, '-inf', '(' .. key)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, key, key)) do
    if id < eid then ahead = ahead + 1 end
  end
end
return ahead + 1
"""

FREE_AGENTS = r"""
-- Only the free agents of a node, so a busy node does not read every agent on each dispatch.
local now = tonumber(ARGV[3])
local free = {}
for _, aid in ipairs(redis.call('SMEMBERS', p .. 'na:' .. ARGV[2])) do
  local a = akey(aid)
  local state = redis.call('HGET', a, 'state')
  if state == 'available' or (state == 'wrap_up' and tonumber(redis.call('HGET', a, 'wrap')) <= now)
  then
    table.insert(free, redis.call('HGETALL', a))
  end
end
return free
"""

MARK_ANNOUNCED = r"""
local e = ekey(ARGV[2])
if redis.call('EXISTS', e) == 1 then
  redis.call('HSET', e, 'ann_pos', ARGV[3], 'ann_overtaken', ARGV[4])
end
return 1
"""

SET_CALLBACK = r"""
local eid = ARGV[2]
local e = ekey(eid)
if redis.call('HGET', e, 'status') ~= 'waiting' then return false end
local owner = redis.call('HGET', e, 'owner')
if owner ~= '' then redis.call('SREM', p .. 'ne:' .. owner, eid) end
local context = cjson.decode(redis.call('HGET', e, 'ctx'))
local extra = cjson.decode(ARGV[3])
for k, v in pairs(extra) do context[k] = v end
redis.call('HSET', e, 'cb', '1', 'owner', '', 'ctx', cjson.encode(context))
return redis.call('HGETALL', e)
"""

# Placement by `acd.ordering.plan_insert`, the same rules in Lua so that an insert is one atomic
# step instead of a WATCH transaction that every offer on the queue would abort.
PLACE = r"""
local function fmt(n) return string.format('%.0f', n) end

-- Entries of the queue with a key >= wanted, sorted by (key, id), without `skip`.
local function slots_from(q, wanted, skip)
  local slots = {}
  for _, set in ipairs({p .. 'w:' .. q, p .. 'o:' .. q}) do
    local found = redis.call('ZRANGEBYSCORE', set, fmt(wanted), '+inf', 'WITHSCORES')
    for i = 1, #found, 2 do
      local id = found[i]
      if id ~= skip then
        local fields = redis.call('HMGET', ekey(id), 'jkey', 'passes', 'prio')
        table.insert(slots, {id = id, key = tonumber(found[i + 1]),
                             jkey = tonumber(fields[1]), passes = tonumber(fields[2]),
                             prio = tonumber(fields[3])})
      end
    end
  end
  table.sort(slots, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    return a.id < b.id
  end)
  return slots
end

local function after(skey, sid, key, id)
  return skey > key or (skey == key and sid > id)
end

-- Apply the pass limit and the per-priority join order (prio nil: explicit position);
-- returns the final key, the ids passed and the ids overtaken.
local function place(slots, id, jkey, wanted, max_passes, old_key, prio)
  local function was_ahead(s)
    return old_key == nil or s.key < old_key or (s.key == old_key and s.id < id)
  end
  local function blocks(s)
    if s.jkey >= jkey then return false end
    if prio ~= nil and s.prio >= prio then return true end
    return was_ahead(s) and s.passes >= max_passes
  end
  local key = wanted
  for _, s in ipairs(slots) do
    if after(s.key, s.id, key, id) and blocks(s) then
      key = s.key + 1
    end
  end
  local passed, overtaken = {}, {}
  for _, s in ipairs(slots) do
    if after(s.key, s.id, key, id) and was_ahead(s) then
      table.insert(overtaken, s.id)
      if s.jkey < jkey then table.insert(passed, s.id) end
    end
  end
  return key, passed, overtaken
end

local function count_passes(passed, overtaken)
  for _, id in ipairs(passed) do redis.call('HINCRBY', ekey(id), 'passes', 1) end
  for _, id in ipairs(overtaken) do redis.call('HINCRBY', ekey(id), 'overtaken', 1) end
end

-- The key just ahead of the entry now at `position` (1-based), or nil past the end.
local function key_before_position(q, position)
  local found = {}
  for _, set in ipairs({p .. 'w:' .. q, p .. 'o:' .. q}) do
    local part = redis.call('ZRANGE', set, 0, position - 1, 'WITHSCORES')
    for i = 1, #part, 2 do
      table.insert(found, {id = part[i], key = tonumber(part[i + 1])})
    end
  end
  table.sort(found, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    return a.id < b.id
  end)
  if position >= 1 and position <= #found then return found[position].key - 1 end
  return nil
end
"""

ADD_ENTRY = r"""
-- ARGV: prefix, entry id, call id, queue, wanted key, floor key, position (or ''),
--       max passes, max length (or ''), owner node (or ''), then field/value pairs.
local eid, call, q = ARGV[2], ARGV[3], ARGV[4]
local wanted, floor = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_passes = tonumber(ARGV[8])
local owner = ARGV[10]
if redis.call('EXISTS', p .. 'call:' .. call) == 1 then return {'duplicate'} end
local length = redis.call('ZCARD', p .. 'w:' .. q) + redis.call('ZCARD', p .. 'o:' .. q)
if ARGV[9] ~= '' and length >= tonumber(ARGV[9]) then return {'full', length} end
if ARGV[7] ~= '' then
  local before = key_before_position(q, tonumber(ARGV[7]))
  if before ~= nil and before < wanted then wanted = math.max(before, floor) end
end
local e = ekey(eid)
for i = 11, #ARGV, 2 do redis.call('HSET', e, ARGV[i], ARGV[i + 1]) end
local jkey = tonumber(redis.call('HGET', e, 'jkey'))
local prio = nil
if ARGV[7] == '' then prio = tonumber(redis.call('HGET', e, 'prio')) end
local key, passed, overtaken = place(slots_from(q, wanted, eid), eid, jkey, wanted, max_passes,
                                     nil, prio)
redis.call('HSET', e, 'key', fmt(key), 'status', 'waiting', 'passes', 0, 'overtaken', 0)
redis.call('ZADD', p .. 'w:' .. q, fmt(key), eid)
redis.call('SET', p .. 'call:' .. call, eid)
if owner ~= '' then redis.call('SADD', p .. 'ne:' .. owner, eid) end
count_passes(passed, overtaken)
wake()
return {'ok', fmt(key), passed, overtaken}
"""

REPRIORITIZE = r"""
-- ARGV: prefix, entry id, priority, wanted key, max passes.
local eid = ARGV[2]
local e = ekey(eid)
local status = redis.call('HGET', e, 'status')
if status ~= 'waiting' and status ~= 'offered' then return false end
local q = redis.call('HGET', e, 'queue')
local old_key = tonumber(redis.call('HGET', e, 'key'))
local jkey = tonumber(redis.call('HGET', e, 'jkey'))
local wanted = tonumber(ARGV[4])
local key, passed, overtaken = place(slots_from(q, wanted, eid), eid, jkey, wanted,
                                     tonumber(ARGV[5]), old_key, tonumber(ARGV[3]))
local set = p .. (status == 'waiting' and 'w:' or 'o:') .. q
redis.call('ZADD', set, fmt(key), eid)
redis.call('HSET', e, 'key', fmt(key), 'prio', ARGV[3])
count_passes(passed, overtaken)
wake()
return {redis.call('HGETALL', e), passed, overtaken}
"""
