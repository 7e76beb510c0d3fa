"""Stand-ins for the outside world, shipped so the tests, the demo command and the benchmarks
share one copy: a scripted OpenAI-compatible model (``scripted_model``) that lets the real
OpenCode run without any API key. Production code never imports this package (an
import-linter contract in pyproject.toml)."""
