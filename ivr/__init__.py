"""IVR: YAML call flows, their validator and engine, intents and sentiment."""
