"""A browser caller's leg as the IVR engine's `CallChannel`.

`WebRtcChannel` joins the signaling half (`WebRtcCall`: identity, hangup)
and the media half (`media.leg.MediaLeg` over the call's transport: play,
listen, inputs) into the one object the IVR engine drives.
"""

from __future__ import annotations

import logging

from ivr.channel import CallerInput, RecognizerConfig
from media.audio import PcmAudio
from media.leg import MediaLeg
from signaling.webrtc.call import WebRtcCall

logger = logging.getLogger("webrtc")


class WebRtcChannel:
    """A `CallChannel` for one browser call; build it inside `on_call`."""

    def __init__(self, call: WebRtcCall, leg: MediaLeg | None = None) -> None:
        self._call = call
        self.leg = leg if leg is not None else MediaLeg(call.transport, call_id=call.call_id)

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

    @property
    def speech_available(self) -> bool:
        return self.leg.speech_available

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        return await self.leg.play(
            audio, interrupt_on_dtmf=interrupt_on_dtmf, interrupt_on_speech=interrupt_on_speech
        )

    def listen(self, config: RecognizerConfig | None) -> None:
        self.leg.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self.leg.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self.leg.clear_inputs()

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
