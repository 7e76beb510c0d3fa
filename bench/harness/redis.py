"""Redis for a benchmark: checked before a server is started against it, and under a key
prefix of the run's own so that runs never read each other's keys."""

from __future__ import annotations

import argparse
import secrets

import redis

from harness.main import BenchError
from harness.server import LOOPBACK, PREFIX


def add_redis_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-port", type=int, default=6379, help="Redis port on 127.0.0.1")


def check_redis(port: int) -> None:
    try:
        redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise BenchError(f"Redis unreachable at {LOOPBACK}:{port}: {exc}") from exc


def redis_settings(port: int) -> dict[str, str | int]:
    """The settings (field names) of a Redis on ``port`` with a fresh prefix."""
    return {
        "redis_host": LOOPBACK,
        "redis_port": port,
        "redis_prefix": f"{PREFIX}{secrets.token_hex(4)}",
    }


def redis_env(port: int) -> dict[str, str]:
    """A server's environment for the Redis on ``port``, checked first, with a fresh prefix."""
    check_redis(port)
    return {name.upper(): str(value) for name, value in redis_settings(port).items()}
