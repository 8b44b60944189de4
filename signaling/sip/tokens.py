"""Random hex tokens for tags, branches and call handles, cut from buffered OS randomness.

A call draws a handle and To tag at its INVITE and a branch for its BYE.
`secrets.token_hex` reads `os.urandom` once per token, through three Python
calls. `random_hex` cuts each token from a block of 4,096 bytes read with one
`os.urandom` call, so a read serves about 220 such calls. Every hex digit comes
from the OS random source, the same source as `secrets`, and is handed out
once. A process forked from this one starts with an empty block, so that
parent and child never share tokens.
"""

from __future__ import annotations

import os
import threading

_BLOCK_BYTES = 4096


class _HexPool:
    """Hex digits of one `os.urandom` block, handed out front to back."""

    def __init__(self) -> None:
        self._digits = ""
        self._position = 0
        self._lock = threading.Lock()

    def take(self, length: int) -> str:
        """Return `length` unused hex digits (0 < length <= 8,192)."""
        if not 0 < length <= 2 * _BLOCK_BYTES:
            raise ValueError(f"token length {length} is outside 1-{2 * _BLOCK_BYTES}")
        with self._lock:
            end = self._position + length
            if end > len(self._digits):
                self._digits = os.urandom(_BLOCK_BYTES).hex()
                self._position, end = 0, length
            token = self._digits[self._position : end]
            self._position = end
            return token

    def clear(self) -> None:
        """Drop the unused digits, so that the next `take` reads a new block."""
        self._digits = ""
        self._position = 0
        # A lock held by another thread at fork time stays locked in the child.
        self._lock = threading.Lock()


_pool = _HexPool()
os.register_at_fork(after_in_child=_pool.clear)

random_hex = _pool.take
"""Return `length` random hex digits (4 bits each) from the OS random source."""
