"""WebRTC: JSON-over-WebSocket signaling and aiortc peers."""
