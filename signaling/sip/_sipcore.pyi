from collections.abc import Callable

from signaling.sip.message import SipMessage
from signaling.sip.parser import Limits

def parse_datagram(data: bytes, limits: Limits, /) -> SipMessage | None: ...
def to_bytes(message: SipMessage, /) -> bytes: ...
def canonical_items(
    items: list[tuple[str, str]],
    spellings: dict[str, str],
    canonical_name: Callable[[str], str],
    /,
) -> list[tuple[str, str]] | None: ...
def configure(*members: object) -> None: ...
