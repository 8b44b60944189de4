from collections.abc import Callable

from signaling.sip.message import SipMessage, SipRequest, SipResponse
from signaling.sip.parser import Limits

def parse_datagram(data: bytes, limits: Limits, /) -> SipMessage | None: ...
def to_bytes(message: SipMessage, /) -> bytes: ...
def canonical_items(
    items: list[tuple[str, str]],
    spellings: dict[str, str],
    canonical_name: Callable[[str], str],
    /,
) -> list[tuple[str, str]] | None: ...
def build_response(
    request: SipRequest,
    status: int,
    reason: str,
    to_tag: str | None,
    headers: list[tuple[str, str]] | None,
    body: bytes,
    content_type: str | None,
    /,
) -> SipResponse | None: ...
def configure(*members: object) -> None: ...
