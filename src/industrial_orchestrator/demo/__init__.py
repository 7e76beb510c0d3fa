"""Offline stand-ins for the outside world: a scripted OpenAI-compatible model server that
lets the real OpenCode run (in the demo and in integration tests) without any API key."""
