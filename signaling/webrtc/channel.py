"""A browser caller's leg as the IVR engine's `CallChannel`.

`WebRtcChannel` joins the signaling half (`WebRtcCall`: identity, hangup)
and the media half (`media.leg.MediaLeg` over the call's transport: play,
listen, inputs) into the one object the IVR engine drives.
"""

from __future__ import annotations

import logging

from media.channel import MediaLegChannel
from media.leg import MediaLeg
from signaling.webrtc.call import WebRtcCall

logger = logging.getLogger("webrtc")


class WebRtcChannel(MediaLegChannel):
    """A `CallChannel` for one browser call; build it inside `on_call`."""

    def __init__(self, call: WebRtcCall, leg: MediaLeg | None = None) -> None:
        super().__init__(leg if leg is not None else MediaLeg(call.transport, call_id=call.call_id))
        self._call = call

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def caller(self) -> str:
        """The signed-in user name (a generated guest name for anonymous callers)."""
        return self._call.user

    @property
    def called(self) -> str:
        """The `to` of the browser's `call` message."""
        return self._call.to

    async def hangup(self) -> None:
        """End the call from the server side; the browser gets `hangup`. Safe to call twice."""
        await self._call.hangup("ended by server")

    async def transfer(self, target: str) -> bool:
        """Return False: a browser leg cannot be handed to a SIP target here.

        NOTE: transferring a browser caller needs a bridge to a new outbound
        leg, which the composition root owns; until it exists, the IVR gets
        False and should continue its flow (for example, queue the caller).
        """
        logger.info("transfer of a browser call is not supported call_id=%s", self.call_id)
        return False
