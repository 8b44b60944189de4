"""ACD: queues, agents, routing strategies, expected-wait estimates and stores.

Entry points: `acd.service.Acd` (the facade), `acd.model` (settings and records),
`acd.store.memory.MemoryStore` and `acd.store.redis.RedisStore`, `acd.relay.EventRelay`,
`acd.cli.add_commands` (`acd-sim`). See docs/acd.md.
"""
