"""The Redis store: the same contract as the in-memory store, shared by many nodes.

Layout (every key starts with the prefix, default `acd:`):

    e:<entry>        hash   one queue entry (kept for a day after it is bridged)
    w:<queue>        zset   waiting entries, score = sort key
    o:<queue>        zset   offered entries, score = sort key (they keep their place)
    leases           zset   offered entries, score = lease expiry
    call:<call id>   string the call's waiting or offered entry
    a:<agent>        hash   one logged-in agent
    agents, na:<node>, ne:<node>   sets of agents, agents per node, entries per owner node
    fa:<node>        hash   agents of the node that are available or in wrap-up -> packed copy
    fi:<node>        zset   the same agents, score = the time they became idle
    nq:<node>        set    queues that agents logged in on the node serve or served
    nodes            zset   node heartbeats
    names            hash   node name (`node.id`) -> the node that holds it
    ht:<queue>       list   recent handle times;  rr  hash  round-robin cursors
    wake             pub/sub channel published on every change that may allow an offer

Every change is one Lua script (`acd.store.lua`), so a node killed at any moment leaves each
entry either waiting, offered under a lease, or bridged. Inserts and re-sorts apply the rules
of `acd.ordering` in Lua; the shared contract tests hold both implementations to one result.

Redis must run with `appendonly yes` and `appendfsync everysec` (or `always`): with RDB
snapshots alone a Redis crash loses every caller queued since the last snapshot, while
`everysec` loses at most about one second of writes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from acd.model import Agent, AgentState, Entry, EntryStatus, JumpSettings, time_key
from acd.ordering import desired_key
from acd.store import lua
from acd.store.base import (
    HANDLE_TIMES_KEPT,
    DispatchView,
    DuplicateCall,
    Inserted,
    Offered,
    OfferRequest,
    OfferRule,
    QueueFull,
    ReapResult,
    Released,
    Removed,
)

_FORGET_NODE = """
if redis.call('SCARD', KEYS[1]) > 0 or redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""

# Claim a node name unless its holder's heartbeat is within the node TTL; returns the live
# holder and its heartbeat, or nil once the name and the first heartbeat are recorded.
_CLAIM_NAME = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  local seen = redis.call('ZSCORE', KEYS[2], holder)
  if seen and tonumber(seen) >= tonumber(ARGV[3]) - tonumber(ARGV[4]) then
    return {holder, seen}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return false
"""

_RELEASE_NAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# Drop every name a dead node holds; the hash has one field per live or crashed node name.
_DROP_NAMES_OF = """
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if flat[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[1], flat[i]) end
end
return 0
"""

log = logging.getLogger("queues")

BRIDGED_TTL_S = 86_400
REAP_BATCH = 200
WAKE_DRAIN_MAX = 100
MAX_CONNECTIONS = 100
DISPATCH_CONNECTIONS = 2
JSON_CACHE_SIZE = 4096
POOL_WAIT_S = 20.0


def _num(value: float) -> str:
    return repr(float(value))


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


@functools.lru_cache(maxsize=JSON_CACHE_SIZE)
def _parsed(text: str) -> Any:
    """Return `json.loads(text)`, cached because agents and entries repeat the same skill,
    queue and missed-agent texts. The result is shared: callers copy it, never change it.

    Entry contexts are not parsed through here, so no caller data stays in the cache.
    """
    return json.loads(text)


def _list_of_ids(text: str) -> list[str]:
    value = _parsed(text or "[]")
    return [str(item) for item in value] if isinstance(value, list) else []


def entry_fields(entry: Entry) -> dict[str, str]:
    return {
        "id": entry.entry_id,
        "call": entry.call_id,
        "queue": entry.queue,
        "prio": str(entry.priority),
        "joined": _num(entry.joined_at),
        "jkey": str(time_key(entry.joined_at)),
        "key": str(entry.key),
        "skills": json.dumps(entry.skills),
        "ctx": json.dumps(entry.context),
        "status": entry.status.value,
        "passes": str(entry.passes),
        "owner": entry.owner_node or "",
        "cb": "1" if entry.callback else "0",
        "agent": entry.agent_id or "",
        "lease": "" if entry.lease_until is None else _num(entry.lease_until),
        "missed": json.dumps(entry.missed_by),
        "ann_pos": str(entry.announced_position),
        "overtaken": str(entry.overtaken),
        "ann_overtaken": str(entry.announced_overtaken),
    }


def entry_from(fields: Mapping[str, str]) -> Entry:
    return Entry(
        entry_id=fields["id"],
        call_id=fields["call"],
        queue=fields["queue"],
        priority=int(fields["prio"]),
        joined_at=float(fields["joined"]),
        key=int(fields["key"]),
        skills={k: int(v) for k, v in _parsed(fields["skills"]).items()},
        context={k: str(v) for k, v in (json.loads(fields["ctx"]) or {}).items()},
        status=EntryStatus(fields["status"]),
        passes=int(fields["passes"]),
        owner_node=fields["owner"] or None,
        callback=fields["cb"] == "1",
        agent_id=fields["agent"] or None,
        lease_until=float(fields["lease"]) if fields["lease"] else None,
        missed_by=_list_of_ids(fields["missed"]),
        announced_position=int(fields["ann_pos"]),
        overtaken=int(fields["overtaken"]),
        announced_overtaken=int(fields["ann_overtaken"]),
    )


def _entry_from_row(row: Sequence[str]) -> Entry:
    return entry_from(dict(zip(lua.ENTRY_FIELDS, row, strict=True)))


def agent_fields(agent: Agent) -> dict[str, str]:
    return {
        "id": agent.agent_id,
        "node": agent.node_id,
        "queues": json.dumps(list(agent.queues)),
        "skills": json.dumps(agent.skills),
        "state": agent.state.value,
        "reason": agent.away_reason,
        "idle": _num(agent.idle_since),
        "wrap": _num(agent.wrap_until),
        "calls": str(agent.calls),
        "missed": str(agent.missed_offers),
        "missed_row": str(agent.missed_in_row),
        "entry": agent.entry_id or "",
        "cqueue": agent.call_queue or "",
        "cstart": _num(agent.call_started),
    }


AGENT_FIELD_NAMES = {
    "state": "state",
    "away_reason": "reason",
    "idle_since": "idle",
    "wrap_until": "wrap",
    "missed_in_row": "missed_row",
}


def agent_from(fields: Mapping[str, str]) -> Agent:
    return Agent(
        agent_id=fields["id"],
        node_id=fields["node"],
        queues=tuple(_parsed(fields["queues"])),
        skills={k: int(v) for k, v in _parsed(fields["skills"]).items()},
        state=AgentState(fields["state"]),
        away_reason=fields["reason"],
        idle_since=float(fields["idle"]),
        wrap_until=float(fields["wrap"]),
        calls=int(fields["calls"]),
        missed_offers=int(fields["missed"]),
        missed_in_row=int(fields["missed_row"]),
        entry_id=fields["entry"] or None,
        call_queue=fields["cqueue"] or None,
        call_started=float(fields["cstart"]),
    )


class RedisStore:
    """An `AcdStore` on one Redis server (`redis.asyncio`, responses decoded as UTF-8)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "acd:",
        dispatch_client: aioredis.Redis | None = None,
    ) -> None:
        self.client: Any = client
        # The dispatcher's calls get their own connections, so that they do not wait for a
        # pooled connection behind many agent requests.
        self.dispatch_client: Any = dispatch_client or client
        self.prefix = prefix
        self._scripts = {
            name: client.register_script(lua.COMMON + source)
            for name, source in {
                "try_offer": lua.TRY_OFFER,
                "try_offers": lua.TRY_OFFERS,
                "dispatch_view": lua.VIEW + lua.DISPATCH_VIEW,
                "claim_bridge": lua.CLAIM_BRIDGE,
                "release": lua.RELEASE,
                "remove": lua.REMOVE,
                "remove_agent": lua.REMOVE_AGENT,
                "put_agent": lua.PUT_AGENT,
                "update_agent": lua.UPDATE_AGENT,
                "finish_call": lua.FINISH_CALL,
                "end_call": lua.END_CALL,
                "position": lua.POSITION,
                "free_agents": lua.FREE_AGENTS,
                "add_entry": lua.PLACE + lua.VIEW + lua.OFFER_NEW + lua.ADD_ENTRY,
                "reprioritize": lua.PLACE + lua.REPRIORITIZE,
                "mark_announced": lua.MARK_ANNOUNCED,
                "set_callback": lua.SET_CALLBACK,
            }.items()
        }
        self._pubsub: Any = None
        self._view_agents: dict[str, Agent] = {}
        self._view_entries: dict[tuple[str, ...], Entry] = {}

    @classmethod
    async def connect(
        cls, url: str, prefix: str = "acd:", max_connections: int = MAX_CONNECTIONS
    ) -> RedisStore:
        """Connect to the Redis server at `url` (redis://HOST:PORT/DB).

        At most `max_connections` commands are in flight at once. One more connection carries
        the wake-up subscription, and dispatch rounds use `DISPATCH_CONNECTIONS` of their own.
        Further calls wait up to `POOL_WAIT_S` seconds for a free connection, where redis-py's
        default pool (redis-py 8.2) raises MaxConnectionsError.
        """
        clients = [
            aioredis.Redis.from_pool(
                aioredis.BlockingConnectionPool.from_url(
                    url, decode_responses=True, max_connections=size, timeout=POOL_WAIT_S
                )
            )
            for size in (max_connections, DISPATCH_CONNECTIONS)
        ]
        for client in clients:
            await client.ping()
        return cls(clients[0], prefix, dispatch_client=clients[1])

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _run(self, name: str, *args: str | int | float) -> Any:
        return await self._scripts[name](keys=[], args=[self.prefix, *args])

    async def _run_dispatch(self, name: str, *args: str | int | float) -> Any:
        script = self._scripts[name]
        return await script(keys=[], args=[self.prefix, *args], client=self.dispatch_client)

    # --- callers ---

    async def add_entry(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None = None,
        max_length: int | None = None,
    ) -> Inserted:
        inserted, _, _ = await self._insert(entry, jump, position, max_length, ("",) * 5)
        return inserted

    async def add_entry_and_view(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
    ) -> tuple[Inserted, DispatchView]:
        inserted, view, _ = await self._insert(
            entry, jump, position, max_length, (node_id, _num(now), str(extra), "", "")
        )
        return inserted, self._view_from(view)

    async def add_entry_and_offer(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
        rule: OfferRule,
    ) -> tuple[Inserted, DispatchView, Offered | None]:
        view_args = (
            node_id,
            _num(now),
            str(extra),
            rule.strategy.value,
            _num(rule.lease_until),
        )
        inserted, view, offered = await self._insert(entry, jump, position, max_length, view_args)
        if not offered:
            return inserted, self._view_from(view), None
        agent_text, entry_row = offered
        agent = self._view_agents.get(agent_text) or agent_from(
            dict(zip(lua.AGENT_FIELDS, json.loads(agent_text), strict=True))
        )
        return inserted, DispatchView(), Offered(_entry_from_row(entry_row), agent)

    async def _insert(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        view_args: tuple[str, str, str, str, str],
    ) -> tuple[Inserted, Any, Any]:
        """Run the insert script; return the insert and the script's raw view and offer."""
        stored = dataclasses.replace(entry, status=EntryStatus.WAITING, passes=0, overtaken=0)
        flat: list[str] = []
        for name, value in entry_fields(stored).items():
            flat += [name, value]
        result = await self._run(
            "add_entry",
            entry.entry_id,
            entry.call_id,
            entry.queue,
            desired_key(entry.joined_at, entry.priority, jump),
            time_key(entry.joined_at - jump.max_jump_s),
            "" if position is None else position,
            jump.max_passes,
            "" if max_length is None else max_length,
            entry.owner_node or "",
            *view_args,
            *flat,
        )
        if result[0] == "duplicate":
            raise DuplicateCall(f"call {entry.call_id} is already queued")
        if result[0] == "full":
            raise QueueFull(f"queue {entry.queue} is full ({result[1]} callers)")
        stored.key = int(result[1])
        inserted = Inserted(
            entry=stored,
            position=int(result[4]),
            passed=tuple(result[2]),
            overtaken=tuple(result[3]),
        )
        return inserted, result[5], result[6]

    async def reprioritize(
        self, entry_id: str, priority: int, jump: JumpSettings
    ) -> Inserted | None:
        joined = await self.client.hget(self._k("e", entry_id), "joined")
        if joined is None:
            return None
        wanted = desired_key(float(joined), priority, jump)
        result = await self._run("reprioritize", entry_id, priority, wanted, jump.max_passes)
        if not result:
            return None
        entry = entry_from(_pairs(result[0]))
        return Inserted(
            entry=entry,
            position=int(result[3]),
            passed=tuple(result[1]),
            overtaken=tuple(result[2]),
        )

    async def remove_entry(self, entry_id: str) -> Removed | None:
        result = await self._run("remove", entry_id)
        if not result:
            return None
        entry = entry_from(_pairs(result[0]))
        freed = agent_from(_pairs(result[1])) if result[1] else None
        return Removed(entry=entry, freed_agent=freed)

    async def get_entry(self, entry_id: str) -> Entry | None:
        fields = await self.client.hgetall(self._k("e", entry_id))
        return entry_from(fields) if fields else None

    async def entry_id_for_call(self, call_id: str) -> str | None:
        value = await self.client.get(self._k("call", call_id))
        return None if value is None else str(value)

    async def position(self, entry_id: str) -> int | None:
        result = await self._run("position", entry_id)
        return int(result) if result else None

    async def _entries(self, entry_ids: Sequence[str]) -> list[Entry]:
        if not entry_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.hgetall(self._k("e", entry_id))
            rows = await pipe.execute()
        return [entry_from(row) for row in rows if row]

    async def queue_entries(self, queue: str, limit: int | None = None) -> list[Entry]:
        end = -1 if limit is None else limit - 1
        found: list[tuple[str, float]] = []
        for name in ("w", "o"):
            found += await self.client.zrange(self._k(name, queue), 0, end, withscores=True)
        found.sort(key=lambda pair: (int(pair[1]), pair[0]))
        if limit is not None:
            found = found[:limit]
        return await self._entries([entry_id for entry_id, _ in found])

    async def waiting(self, queue: str, limit: int) -> list[Entry]:
        entry_ids = await self.client.zrange(self._k("w", queue), 0, limit - 1)
        return await self._entries(entry_ids)

    async def queue_length(self, queue: str) -> int:
        waiting = await self.client.zcard(self._k("w", queue))
        offered = await self.client.zcard(self._k("o", queue))
        return int(waiting) + int(offered)

    async def mark_announced(self, entry_id: str, position: int, overtaken: int) -> None:
        await self._run("mark_announced", entry_id, position, overtaken)

    async def set_callback(self, entry_id: str, context: Mapping[str, str]) -> Entry | None:
        result = await self._run("set_callback", entry_id, json.dumps(dict(context)))
        return entry_from(_pairs(result)) if result else None

    # --- agents ---

    async def put_agent(
        self, agent: Agent, keep: frozenset[AgentState] = frozenset()
    ) -> Agent | None:
        flat: list[str] = []
        for name, value in agent_fields(agent).items():
            flat += [name, value]
        states = json.dumps(sorted(state.value for state in keep))
        result = await self._run("put_agent", agent.agent_id, agent.node_id, states, *flat)
        return agent_from(_pairs(result)) if isinstance(result, list) else None

    async def get_agent(self, agent_id: str) -> Agent | None:
        fields = await self.client.hgetall(self._k("a", agent_id))
        return agent_from(fields) if fields else None

    async def agents(self, node_id: str | None = None) -> list[Agent]:
        members_key = self._k("agents") if node_id is None else self._k("na", node_id)
        agent_ids = sorted(await self.client.smembers(members_key))
        if not agent_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.hgetall(self._k("a", agent_id))
            rows = await pipe.execute()
        return [agent_from(row) for row in rows if row]

    async def free_agents(self, node_id: str, now: float) -> list[Agent]:
        rows = await self._run("free_agents", node_id, _num(now))
        return [agent_from(_pairs(row)) for row in rows]

    async def dispatch_view(self, node_id: str, now: float, extra: int) -> DispatchView:
        result = await self._run_dispatch("dispatch_view", node_id, _num(now), extra)
        return self._view_from(result)

    def _view_from(self, result: Any) -> DispatchView:
        if not result:
            return DispatchView()
        agent_rows, queues, entry_rows, cursor_values = result
        # Most records are unchanged since the last view (the same free agents, the same
        # callers at the head), so a record is rebuilt only when one of its fields changed.
        agents: dict[str, Agent] = {}
        for text in agent_rows:
            agents[text] = self._view_agents.get(text) or agent_from(
                dict(zip(lua.AGENT_FIELDS, json.loads(text), strict=True))
            )
        entries: dict[tuple[str, ...], Entry] = {}
        waiting: dict[str, list[Entry]] = {}
        for queue, rows in zip(queues, entry_rows, strict=True):
            waiting[str(queue)] = []
            for row in rows:
                key = tuple(row)
                entry = self._view_entries.get(key) or _entry_from_row(row)
                entries[key] = entry
                waiting[str(queue)].append(entry)
        self._view_agents, self._view_entries = agents, entries
        return DispatchView(
            agents=list(agents.values()),
            waiting=waiting,
            cursors={
                str(queue): str(value)
                for queue, value in zip(queues, cursor_values, strict=True)
                if value
            },
        )

    def _released(self, result: Any) -> Released:
        agent = agent_from(_pairs(result[2])) if result[2] else None
        old = AgentState(result[1]) if result[1] else AgentState.LOGGED_OUT
        return Released(entry=entry_from(_pairs(result[0])), agent=agent, old_agent_state=old)

    async def remove_agent(self, agent_id: str, now: float) -> tuple[Agent, Released | None] | None:
        return await self._remove_agent(agent_id, "")

    async def _remove_agent(self, agent_id: str, node: str) -> tuple[Agent, Released | None] | None:
        """Log an agent out, but when `node` is given only if it is still logged in there."""
        result = await self._run("remove_agent", agent_id, node)
        if not result:
            return None
        agent = agent_from(_pairs(result[0]))
        released = None
        if result[1]:
            released = self._released(result[1])
            released = Released(released.entry, None, released.old_agent_state)
        return agent, released

    async def update_agent(
        self, agent_id: str, expected: frozenset[AgentState], changes: Mapping[str, object]
    ) -> Agent | None:
        flat: list[str] = []
        for name, value in changes.items():
            field = AGENT_FIELD_NAMES.get(name)
            if field is None:
                raise ValueError(f"agent field {name!r} cannot be changed with update_agent")
            if isinstance(value, AgentState):
                text = value.value
            elif isinstance(value, float | int) and not isinstance(value, bool):
                text = _num(value) if isinstance(value, float) else str(value)
            else:
                text = str(value)
            flat += [field, text]
        states = json.dumps(sorted(state.value for state in expected))
        result = await self._run("update_agent", agent_id, states, *flat)
        return agent_from(_pairs(result)) if result else None

    # --- offers ---

    async def try_offer(
        self, entry_id: str, agent_id: str, now: float, lease_until: float
    ) -> Entry | None:
        result = await self._run("try_offer", entry_id, agent_id, _num(now), _num(lease_until))
        return entry_from(_pairs(result)) if result else None

    async def try_offers(self, offers: Sequence[OfferRequest], now: float) -> list[Entry | None]:
        if not offers:
            return []
        flat: list[str] = []
        for offer in offers:
            flat += [offer.entry_id, offer.agent_id, _num(offer.lease_until), offer.node_id or ""]
        rows = await self._run_dispatch("try_offers", _num(now), *flat)
        return [_entry_from_row(row) if isinstance(row, list) else None for row in rows]

    async def claim_bridge(self, entry_id: str, agent_id: str, now: float) -> Entry | None:
        result = await self._run("claim_bridge", entry_id, agent_id, _num(now), BRIDGED_TTL_S)
        return entry_from(_pairs(result)) if result else None

    async def release_offer(
        self, entry_id: str, agent_id: str, missed: bool, away_after: int
    ) -> Released | None:
        result = await self._run("release", entry_id, agent_id, int(missed), away_after, "")
        return self._released(result) if result else None

    async def finish_call(self, agent_id: str, now: float, wrap_up_s: float) -> Agent | None:
        result = await self._run(
            "finish_call", agent_id, _num(now), _num(wrap_up_s), _num(now + wrap_up_s)
        )
        return agent_from(_pairs(result)) if result else None

    async def end_call(
        self, agent_id: str, now: float, wrap_up_s: Mapping[str, float]
    ) -> Agent | None:
        result = await self._run(
            "end_call", agent_id, _num(now), json.dumps(dict(wrap_up_s)), HANDLE_TIMES_KEPT
        )
        return agent_from(_pairs(result)) if result else None

    async def reap(self, now: float, node_ttl_s: float, away_after: int) -> ReapResult:
        result = ReapResult()
        expired = await self.client.zrangebyscore(
            self._k("leases"), "-inf", _num(now), start=0, num=REAP_BATCH
        )
        for entry_id in expired:
            agent_id = await self.client.hget(self._k("e", entry_id), "agent")
            if not agent_id:
                continue
            released = await self._run("release", entry_id, agent_id, 1, away_after, _num(now))
            if released:
                result.returned.append(self._released(released))
        dead = await self.client.zrangebyscore(self._k("nodes"), "-inf", f"({now - node_ttl_s!r}")
        for node in dead:
            await self._close_out_node(str(node), now, result)
        return result

    async def _close_out_node(self, node: str, now: float, result: ReapResult) -> None:
        log.warning("node %s: heartbeat lost, closing out its callers and agents", node)
        for entry_id in await self.client.smembers(self._k("ne", node)):
            removed = await self.remove_entry(entry_id)
            if removed is not None:
                result.abandoned.append(removed)
        for agent_id in await self.client.smembers(self._k("na", node)):
            outcome = await self._remove_agent(agent_id, node)
            if outcome is not None:
                result.logged_out.append(outcome[0])
                if outcome[1] is not None:
                    result.returned.append(outcome[1])
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._k("nodes"), node)
            pipe.delete(
                self._k("ne", node),
                self._k("na", node),
                self._k("fa", node),
                self._k("fi", node),
                self._k("nq", node),
            )
            await pipe.execute()
        await self.client.eval(_DROP_NAMES_OF, 1, self._k("names"), node)

    async def next_lease_expiry(self) -> float | None:
        first = await self.client.zrange(self._k("leases"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    # --- nodes, statistics, wake-ups ---

    async def heartbeat(self, node_id: str, now: float) -> None:
        await self.client.zadd(self._k("nodes"), {node_id: now})

    async def forget_node(self, node_id: str) -> bool:
        """Drop a cleanly stopped node's heartbeat and its `nq`, `fa`, `ne`, `na` keys.

        One script drops them only when the node left no entry and no agent
        behind. Otherwise the keys stay, and the other nodes' reaper closes
        the node out after `node_ttl_s` as after a crash. Returns True when
        the keys were dropped.
        """
        dropped = await self.client.eval(
            _FORGET_NODE,
            5,
            self._k("ne", node_id),
            self._k("na", node_id),
            self._k("fa", node_id),
            self._k("nq", node_id),
            self._k("nodes"),
            node_id,
        )
        return bool(dropped)

    async def claim_name(
        self, name: str, node_id: str, now: float, node_ttl_s: float
    ) -> tuple[str, float] | None:
        holder = await self.client.eval(
            _CLAIM_NAME,
            2,
            self._k("names"),
            self._k("nodes"),
            name,
            node_id,
            _num(now),
            _num(node_ttl_s),
        )
        if not holder:
            return None
        return str(holder[0]), float(holder[1])

    async def release_name(self, name: str, node_id: str) -> None:
        await self.client.eval(_RELEASE_NAME, 1, self._k("names"), name, node_id)

    async def record_handle_time(self, queue: str, seconds: float) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self._k("ht", queue), _num(seconds))
            pipe.ltrim(self._k("ht", queue), 0, HANDLE_TIMES_KEPT - 1)
            await pipe.execute()

    async def handle_times(self, queue: str) -> list[float]:
        return [float(v) for v in await self.client.lrange(self._k("ht", queue), 0, -1)]

    async def cursors(self, queues: Sequence[str]) -> dict[str, str]:
        if not queues:
            return {}
        values = await self.client.hmget(self._k("rr"), list(queues))
        return {queue: value for queue, value in zip(queues, values, strict=True) if value}

    async def set_cursors(self, cursors: Mapping[str, str]) -> None:
        if cursors:
            await self.dispatch_client.hset(self._k("rr"), mapping=dict(cursors))

    async def wait_changed(self, max_wait_s: float) -> None:
        if self._pubsub is None:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._k("wake"))
        message = await self._pubsub.get_message(timeout=max(max_wait_s, 0.0))
        for _ in range(WAKE_DRAIN_MAX):
            if message is None:
                break
            message = await self._pubsub.get_message(timeout=0.0)

    async def delete_all(self) -> None:
        """Delete every key under this store's prefix (simulator runs and tests)."""
        batch: list[str] = []
        async for key in self.client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(cast(str, key))
            if len(batch) >= 500:
                await self.client.delete(*batch)
                batch.clear()
        if batch:
            await self.client.delete(*batch)

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        await self.client.aclose()
        if self.dispatch_client is not self.client:
            await self.dispatch_client.aclose()
