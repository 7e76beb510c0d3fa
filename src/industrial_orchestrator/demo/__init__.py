"""The demo's own material: the sample repository and the session run on it. The scripted
model it runs OpenCode with lives in ``testing``, shared with the tests and benchmarks."""
