"""The WebSocket guard (/ws)."""
