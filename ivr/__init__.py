"""IVR: YAML call flows, their validator and engine, intents and sentiment.

Entry points: `ivr.loader.load_flow`, `ivr.engine.IvrSession`,
`ivr.registry.FlowRegistry` and `ivr.cli.add_commands`.
"""
