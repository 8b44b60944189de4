"""The optional C extension of the media hot path, `media._rtpcore`.

`make install` builds it from `media/_rtpcore.c` (gcc and the Python
headers are needed). Without it, every user of `rtpcore` falls back to the
Python reference implementation, which decides the same but costs more CPU
per packet; a warning at import says so.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType

logger = logging.getLogger("media")


def _load() -> ModuleType | None:
    if sys.byteorder != "little":
        # The C jitter buffer keeps native int16 samples, and frames are s16le bytes.
        logger.warning("media._rtpcore supports little-endian hosts only; using Python")
        return None
    try:
        from media import _rtpcore
    except ImportError as exc:
        logger.warning(
            "media._rtpcore unavailable (%s), so the media path runs the slower Python "
            "implementation; run `make install` to build it",
            exc,
        )
        return None
    return _rtpcore


rtpcore = _load()
"""The C extension module, or None when it is not built."""
