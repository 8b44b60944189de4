"""Media: RTP, codecs, DTMF, VAD endpointing, speech recognition, prompts, bridging."""
