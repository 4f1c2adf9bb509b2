"""Small apps written on the engine's agent API: run one with ``stream-processor -A examples.<name>.app:app worker``."""
