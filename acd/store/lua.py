"""Lua scripts of the Redis store: each runs atomically inside Redis.

Every script receives the key prefix as ARGV[1] and builds its key names from it, so the
store works on one Redis server (not Redis Cluster, where keys must be declared).
Numbers travel as strings; an empty string means "none".
"""

# Hash fields in the order in which `record()` returns them. `acd.store.redis` reads records
# back with the same tuples, so the two sides cannot disagree on the order.
ENTRY_FIELDS = (
    "id",
    "call",
    "queue",
    "prio",
    "joined",
    "jkey",
    "key",
    "skills",
    "ctx",
    "status",
    "passes",
    "owner",
    "cb",
    "agent",
    "lease",
    "missed",
    "ann_pos",
    "overtaken",
    "ann_overtaken",
)
AGENT_FIELDS = (
    "id",
    "node",
    "queues",
    "skills",
    "state",
    "reason",
    "idle",
    "wrap",
    "calls",
    "missed",
    "missed_row",
    "entry",
    "cqueue",
    "cstart",
)


def _lua_list(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


COMMON = (
    f"""
local ENTRY_FIELDS = {_lua_list(ENTRY_FIELDS)}
local AGENT_FIELDS = {_lua_list(AGENT_FIELDS)}
"""
    + r"""
local p = ARGV[1]
local function ekey(id) return p .. 'e:' .. id end
local function akey(id) return p .. 'a:' .. id end
local function wake() redis.call('PUBLISH', p .. 'wake', '1') end

-- A hash's fields in the order of `names`, one array instead of field/value pairs.
local function record(key, names)
  return redis.call('HMGET', key, unpack(names))
end

-- Keep the agent in its node's hash of agents that are available or in wrap-up (fa:<node>),
-- so a dispatch reads all of them with one HGETALL. The value is the state, the wrap-up end,
-- the queues (JSON) and the whole record (a JSON array in AGENT_FIELDS order), separated by
-- tabs, which JSON text never contains unescaped. The same agents are also members of the
-- sorted set fi:<node>, scored by the time they became idle. Every script that changes an
-- agent calls this after the change, so neither copy is ever stale.
local function index_agent(aid)
  local fields = record(akey(aid), AGENT_FIELDS)
  local node, state = fields[2], fields[5]
  if not node then return end
  if state == 'available' or state == 'wrap_up' then
    local packed = table.concat({state, fields[8], fields[3], cjson.encode(fields)}, '\t')
    redis.call('HSET', p .. 'fa:' .. node, aid, packed)
    redis.call('ZADD', p .. 'fi:' .. node, fields[7], aid)
  else
    redis.call('HDEL', p .. 'fa:' .. node, aid)
    redis.call('ZREM', p .. 'fi:' .. node, aid)
  end
end

-- A number as text that reads back as the same double.
local function exact(n) return string.format('%.17g', n) end

-- End an agent's call: wrap-up until `wrap` (text) when `wrap_s` > 0, else available.
local function finish(aid, wrap_s, wrap)
  local a = akey(aid)
  redis.call('HINCRBY', a, 'calls', 1)
  redis.call('HSET', a, 'entry', '', 'wrap', wrap, 'idle', wrap)
  if wrap_s > 0 then
    redis.call('HSET', a, 'state', 'wrap_up')
  else
    redis.call('HSET', a, 'state', 'available')
  end
  index_agent(aid)
  wake()
  return redis.call('HGETALL', a)
end

-- The 1-based position of a waiting or offered entry among both sets of its queue, or false.
local function position_of(eid)
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
end

-- Reserve a waiting entry for a free agent until `lease`; false when either is not free.
local function offer(eid, aid, now, lease)
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
  index_agent(aid)
  return true
end

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
    index_agent(aid)
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
    index_agent(aid)
    freed = redis.call('HGETALL', akey(aid))
  end
  redis.call('HSET', e, 'status', 'left')
  local entry = redis.call('HGETALL', e)
  redis.call('DEL', e)
  wake()
  return {entry, freed}
end
"""
)

TRY_OFFER = r"""
if not offer(ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]) then return false end
return redis.call('HGETALL', ekey(ARGV[2]))
"""

TRY_OFFERS = r"""
-- ARGV: prefix, now, then per offer the entry id, agent id, lease expiry and the node the
-- agent must be logged in on ('' for any node).
-- Returns per offer the entry's fields in ENTRY_FIELDS order, or 0 when it was refused.
local now = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 4 do
  local node = ARGV[i + 3]
  local moved = node ~= '' and redis.call('HGET', akey(ARGV[i + 1]), 'node') ~= node
  if not moved and offer(ARGV[i], ARGV[i + 1], now, ARGV[i + 2]) then
    table.insert(out, record(ekey(ARGV[i]), ENTRY_FIELDS))
  else
    table.insert(out, 0)
  end
end
return out
"""

VIEW = r"""
-- The dispatch view of `node` at `now`, as `AcdStore.dispatch_view` defines it.
-- Returns {} or {agents, queues, entries per queue, cursors}: agents as JSON arrays and
-- entries as arrays of their fields, in AGENT_FIELDS and ENTRY_FIELDS order. The queues with
-- waiting callers are found first, so a wake-up with nobody waiting reads no agent.

-- The queues of `node` that have waiting callers, as a set, or nil when there are none.
local function calling_queues(node)
  local calling, any_calling = {}, false
  for _, q in ipairs(redis.call('SMEMBERS', p .. 'nq:' .. node)) do
    if redis.call('ZCARD', p .. 'w:' .. q) > 0 then
      calling[q] = true
      any_calling = true
    end
  end
  if any_calling then return calling end
  return nil
end

-- The free agents of `node` at `now` that serve a queue of `calling` (their records as JSON
-- arrays), and the queues of `calling` that they serve, sorted.
local function free_serving(node, now, calling)
  local free, seen, queues, serves = {}, {}, {}, {}
  local packed = redis.call('HGETALL', p .. 'fa:' .. node)
  for i = 2, #packed, 2 do
    local value = packed[i]
    local first = string.find(value, '\t', 1, true)
    local second = string.find(value, '\t', first + 1, true)
    local third = string.find(value, '\t', second + 1, true)
    local state = string.sub(value, 1, first - 1)
    local wrap = tonumber(string.sub(value, first + 1, second - 1))
    if state == 'available' or (state == 'wrap_up' and wrap <= now) then
      local text = string.sub(value, second + 1, third - 1)
      if serves[text] == nil then
        serves[text] = false
        for _, q in ipairs(cjson.decode(text)) do
          if calling[q] then
            serves[text] = true
            if not seen[q] then
              seen[q] = true
              table.insert(queues, q)
            end
          end
        end
      end
      if serves[text] then table.insert(free, string.sub(value, third + 1)) end
    end
  end
  table.sort(queues)
  return free, queues
end

-- The view of `free` agents and the `queues` they serve: add each queue's first waiting
-- entries and cursor.
local function view_of(free, queues, extra)
  local entries, cursors = {}, {}
  for _, q in ipairs(queues) do
    local rows = {}
    for _, eid in ipairs(redis.call('ZRANGE', p .. 'w:' .. q, 0, #free + extra - 1)) do
      table.insert(rows, record(ekey(eid), ENTRY_FIELDS))
    end
    table.insert(entries, rows)
    table.insert(cursors, redis.call('HGET', p .. 'rr', q) or '')
  end
  return {free, queues, entries, cursors}
end

local function dispatch_view(node, now, extra)
  local calling = calling_queues(node)
  if not calling then return {} end
  local free, queues = free_serving(node, now, calling)
  if #free == 0 then return {} end
  return view_of(free, queues, extra)
end
"""

OFFER_NEW = r"""
local AGENT_AT = {}
for i, name in ipairs(AGENT_FIELDS) do AGENT_AT[name] = i end
local STRATEGIES = {longest_idle = true, round_robin = true, fewest_calls = true,
                    skills_weighted = true}

-- Byte-wise a < b, which is the order of Python's str comparison on UTF-8 text. Lua 5.1's `<`
-- on strings calls strcoll, and redis-server sets LC_COLLATE from its environment at start.
local function before(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The order of `acd.routing.choose_agent` for every strategy but round robin: least
-- (rank, idle since, agent id) first.
local function chosen_first(x, y)
  if x.rank ~= y.rank then return x.rank < y.rank end
  if x.idle ~= y.idle then return x.idle < y.idle end
  return before(x.id, y.id)
end

-- The agent that `acd.routing.choose_agent` picks among `agents` with `cursor` ('' or false:
-- none).
local function choose(strategy, agents, cursor)
  local best = nil
  if strategy == 'round_robin' then
    local after_cursor = nil
    for _, agent in ipairs(agents) do
      if best == nil or before(agent.id, best.id) then best = agent end
      if cursor and cursor ~= '' and before(cursor, agent.id)
         and (after_cursor == nil or before(agent.id, after_cursor.id)) then
        after_cursor = agent
      end
    end
    return after_cursor or best
  end
  for _, agent in ipairs(agents) do
    if best == nil or chosen_first(agent, best) then best = agent end
  end
  return best
end

-- Whether the agent with the packed copy `value` (see index_agent) is free at `now` and can
-- serve a caller of queue `q` with skill levels `needs`; returns its record (JSON) if so.
local function able_record(value, q, now, needs, any_needs)
  local first = string.find(value, '\t', 1, true)
  local second = string.find(value, '\t', first + 1, true)
  local third = string.find(value, '\t', second + 1, true)
  local state = string.sub(value, 1, first - 1)
  if state ~= 'available' then
    if state ~= 'wrap_up' or tonumber(string.sub(value, first + 1, second - 1)) > now then
      return nil
    end
  end
  local serves = false
  for _, queue in ipairs(cjson.decode(string.sub(value, second + 1, third - 1))) do
    if queue == q then serves = true end
  end
  if not serves then return nil end
  local text = string.sub(value, third + 1)
  if any_needs then
    local skills = cjson.decode(cjson.decode(text)[AGENT_AT.skills])
    for name, level in pairs(needs) do
      if (skills[name] or 0) < level then return nil end
    end
  end
  return text
end

-- The longest idle agent of `node` that can serve a caller of `q` at `now`, preferring one
-- not in `missed`, as {id, text}; nil when there is none. It walks fi:<node> in (idle since,
-- agent id) order, because Redis orders members of equal score by their bytes. Returns false
-- when fi:<node> and fa:<node> differ in size, as after an upgrade from code without fi.
local INDEX_CHUNK = 16
local function longest_idle_able(node, q, now, needs, any_needs, missed)
  local index, packed = p .. 'fi:' .. node, p .. 'fa:' .. node
  -- NOTE: older code in the same Redis changes fa:<node> without fi:<node>, which can leave
  -- fi:<node> stale at the same size. Nodes of one Redis must run code that keeps both.
  if redis.call('ZCARD', index) ~= redis.call('HLEN', packed) then return false end
  local first_able = nil
  local start = 0
  while true do
    local ids = redis.call('ZRANGE', index, start, start + INDEX_CHUNK - 1)
    if #ids == 0 then return first_able end
    for _, aid in ipairs(ids) do
      local value = redis.call('HGET', packed, aid)
      if not value then return false end
      local text = able_record(value, q, now, needs, any_needs)
      if text then
        if not missed[aid] then return {id = aid, text = text} end
        if first_able == nil then first_able = {id = aid, text = text} end
      end
    end
    start = start + INDEX_CHUNK
  end
end

-- The agent that `acd.routing.plan_offers` gives a lone caller of `q`, chosen from the
-- records of the `free` agents, all of which serve `q`; nil when none can serve it.
local function scan_for_agent(free, strategy, needs, any_needs, missed, cursor)
  local able, fresh = {}, {}
  for _, text in ipairs(free) do
    local fields = cjson.decode(text)
    local agent = {id = fields[AGENT_AT.id], text = text, rank = 0,
                   idle = tonumber(fields[AGENT_AT.idle])}
    local skills = nil
    if any_needs or strategy == 'skills_weighted' then
      skills = cjson.decode(fields[AGENT_AT.skills])
    end
    local serves = true
    if any_needs then
      for name, level in pairs(needs) do
        if (skills[name] or 0) < level then serves = false end
      end
    end
    if serves then
      if strategy == 'fewest_calls' then
        agent.rank = tonumber(fields[AGENT_AT.calls])
      elseif strategy == 'skills_weighted' then
        for name, _ in pairs(needs) do agent.rank = agent.rank - (skills[name] or 0) end
      end
      table.insert(able, agent)
      if not missed[agent.id] then table.insert(fresh, agent) end
    end
  end
  if #fresh > 0 then able = fresh end
  if #able == 0 then return nil end
  return choose(strategy, able, cursor)
end

-- Offer the new entry `eid` of queue `q` in this step when the plan of `node`'s dispatch view
-- is that one offer alone, which holds when the entry is the only waiting caller of every
-- queue in the view. Then `acd.routing.plan_offers` compares no queues and gives the entry to
-- the agent that its queue's strategy picks among the free agents that can serve it,
-- preferring those that did not miss it. Returns {agent record before the offer (JSON),
-- entry fields after it} when it offered, {} when the view plans no offer, or false when
-- the caller has to plan from the view.
local function offer_new(eid, q, node, now, strategy, lease)
  if not STRATEGIES[strategy] then return false end
  local calling = calling_queues(node)
  if not calling then return {} end
  if redis.call('ZCARD', p .. 'w:' .. q) ~= 1 then return false end
  local e = ekey(eid)
  local needs = cjson.decode(redis.call('HGET', e, 'skills'))
  local any_needs = next(needs) ~= nil
  local missed = {}
  for _, aid in ipairs(cjson.decode(redis.call('HGET', e, 'missed'))) do missed[aid] = true end
  local only_q = true
  for queue, _ in pairs(calling) do
    if queue ~= q then only_q = false end
  end
  -- With no other calling queue, every free agent in the view serves `q`, so the longest
  -- idle one needs no scan of all free agents.
  local agent = false
  if only_q and strategy == 'longest_idle' then
    agent = longest_idle_able(node, q, now, needs, any_needs, missed)
  end
  if agent == false then
    local free, queues = free_serving(node, now, calling)
    if #free == 0 then return {} end
    if #queues ~= 1 or queues[1] ~= q then return false end
    agent = scan_for_agent(free, strategy, needs, any_needs, missed,
                           redis.call('HGET', p .. 'rr', q))
  end
  if agent == nil then return {} end
  if not offer(eid, agent.id, now, lease) then return false end
  if strategy == 'round_robin' then redis.call('HSET', p .. 'rr', q, agent.id) end
  return {agent.text, record(e, ENTRY_FIELDS)}
end
"""

DISPATCH_VIEW = r"""
-- ARGV: prefix, node id, now, extra waiting callers read per queue beyond the free agents.
return dispatch_view(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
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
index_agent(aid)
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
redis.call('HDEL', p .. 'fa:' .. redis.call('HGET', a, 'node'), aid)
redis.call('ZREM', p .. 'fi:' .. redis.call('HGET', a, 'node'), aid)
redis.call('DEL', a)
wake()
return {agent, released}
"""

PUT_AGENT = r"""
-- ARGV: prefix, agent id, node, states that keep an existing record (JSON array), fields.
-- Returns the kept record, or 1 when the agent was stored.
local aid, node = ARGV[2], ARGV[3]
local a = akey(aid)
local state = redis.call('HGET', a, 'state')
if state then
  for _, s in ipairs(cjson.decode(ARGV[4])) do
    if s == state then return redis.call('HGETALL', a) end
  end
end
local old = redis.call('HGET', a, 'node')
if old then
  redis.call('SREM', p .. 'na:' .. old, aid)
  redis.call('HDEL', p .. 'fa:' .. old, aid)
  redis.call('ZREM', p .. 'fi:' .. old, aid)
end
redis.call('DEL', a)
redis.call('HSET', a, unpack(ARGV, 5))
redis.call('SADD', p .. 'agents', aid)
redis.call('SADD', p .. 'na:' .. node, aid)
for _, q in ipairs(cjson.decode(redis.call('HGET', a, 'queues'))) do
  redis.call('SADD', p .. 'nq:' .. node, q)
end
index_agent(aid)
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
if #ARGV >= 4 then redis.call('HSET', a, unpack(ARGV, 4)) end
index_agent(ARGV[2])
wake()
return redis.call('HGETALL', a)
"""

FINISH_CALL = r"""
if redis.call('HGET', akey(ARGV[2]), 'state') ~= 'on_call' then return false end
return finish(ARGV[2], tonumber(ARGV[4]), ARGV[5])
"""

END_CALL = r"""
-- ARGV: prefix, agent id, now, wrap-up seconds per queue (JSON object), handle times kept.
local aid, now = ARGV[2], tonumber(ARGV[3])
local a = akey(aid)
if redis.call('HGET', a, 'state') ~= 'on_call' then return false end
local q = redis.call('HGET', a, 'cqueue')
local wrap_s = 0
if q ~= '' then
  wrap_s = tonumber(cjson.decode(ARGV[4])[q] or 0)
  local handle_times = p .. 'ht:' .. q
  redis.call('LPUSH', handle_times, exact(now - tonumber(redis.call('HGET', a, 'cstart'))))
  redis.call('LTRIM', handle_times, 0, tonumber(ARGV[5]) - 1)
end
return finish(aid, wrap_s, exact(now + wrap_s))
"""

POSITION = r"""
return position_of(ARGV[2])
"""

FREE_AGENTS = r"""
-- Only the free agents of a node, so a busy node does not read every agent on each dispatch.
local now = tonumber(ARGV[3])
local free = {}
for _, aid in ipairs(redis.call('HKEYS', p .. 'fa:' .. ARGV[2])) do
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
--       max passes, max length (or ''), owner node (or ''), node id of a dispatch view to
--       read after the insert (or ''), now, extra callers of the view, strategy of the
--       queue for an offer in this step (or ''), lease expiry of that offer, then
--       field/value pairs.
-- Returns {'ok', key, passed ids, overtaken ids, position, view (or {}), offer (or {})},
-- {'duplicate'} or {'full', length}, with the offer as `offer_new` returns it.
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
redis.call('HSET', e, unpack(ARGV, 16))
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
local position = position_of(eid)
local view, offered = {}, {}
if ARGV[11] ~= '' then
  local node, now = ARGV[11], tonumber(ARGV[12])
  local outcome = false
  if ARGV[14] ~= '' then outcome = offer_new(eid, q, node, now, ARGV[14], ARGV[15]) end
  if outcome then
    offered = outcome
  else
    view = dispatch_view(node, now, tonumber(ARGV[13]))
  end
end
-- A caller offered in this step leaves nothing to dispatch, so only a waiting one wakes nodes.
if #offered == 0 then wake() end
return {'ok', fmt(key), passed, overtaken, position, view, offered}
"""

REPRIORITIZE = r"""
-- ARGV: prefix, entry id, priority, wanted key, max passes.
-- Returns false or {entry fields and values, passed ids, overtaken ids, position}.
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
return {redis.call('HGETALL', e), passed, overtaken, position_of(eid)}
"""
