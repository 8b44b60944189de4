"""Helpers for starting and stopping asyncio components, shared by every package.

It imports nothing from the rest of VoxGate, so the ACD (which runs on its own)
and the SIP stack can use it as well as the node.
"""
