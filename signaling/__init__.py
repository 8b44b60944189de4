"""Call signaling: SIP (RFC 3261) toward trunks and phones, WebRTC toward browsers."""
