"""What every benchmark in ``bench/`` shares: the server it starts, the databases and Redis
it uses, its statistics, its output and its ``main``.

Each benchmark script keeps only its scenario (what it measures and how it reports it) and
imports the rest from here, never from another benchmark. A script run as
``python bench/<name>.py`` has ``bench/`` on ``sys.path``, so ``harness`` imports as a
top-level package.
"""
