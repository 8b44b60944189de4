"""ACD: queues, agents, routing strategies, expected-wait estimates and stores."""
