"""Industrial Orchestrator: a control plane for autonomous AI coding agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("industrial-orchestrator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
