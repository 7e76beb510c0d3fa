"""Prometheus metrics of user guide §9, in a registry owned by one app instance."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from ..domain.events import EventType, NewEvent
from ..domain.tasks.loop_guard import TripKind

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        # `_created` series double the output and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.active_sessions = Gauge(
            "orchestrator_active_sessions",
            "Sessions holding a running slot (RUNNING or DEGRADED), counted in the database",
            registry=self.registry,
        )
        self.tasks_total = Counter(
            "orchestrator_tasks",
            "Task attempts ended COMPLETED (success) or FAILED (failure) through this "
            "replica; a task retried after a failure counts once per failed attempt",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("success", "failure"):
            self.tasks_total.labels(outcome=outcome)
        self.active_agents = Gauge(
            "orchestrator_active_agents",
            "Registered agents that are not offline, counted in the database",
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "API latency by method, route template and status code",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_total = Counter(
            "orchestrator_events",
            "Events committed to the log by this replica, by type",
            ["type"],
            registry=self.registry,
        )
        for event_type in EventType:
            self.events_total.labels(type=event_type.value)
        self.ws_connections = Gauge(
            "orchestrator_ws_connections",
            "Open WebSocket streams on this replica, by stream",
            ["stream"],
            registry=self.registry,
        )
        self.ws_slow_clients = Counter(
            "orchestrator_ws_slow_clients",
            "WebSocket clients disconnected for accepting no data for WS_SEND_TIMEOUT_SECONDS",
            ["stream"],
            registry=self.registry,
        )
        for stream in ("all", "sessions", "session"):
            self.ws_connections.labels(stream=stream)
            self.ws_slow_clients.labels(stream=stream)
        self.loop_guard_stops = Counter(
            "orchestrator_loop_guard_stops",
            "Task attempts the loop guard stopped through this replica, by what tripped it "
            "(repeated_tool_call, no_progress, token_share)",
            ["kind"],
            registry=self.registry,
        )
        for kind in TripKind:
            self.loop_guard_stops.labels(kind=kind.value)

    def count_events(self, stored: Sequence[NewEvent]) -> None:
        for event in stored:
            self.events_total.labels(type=event.type.value).inc()
            if event.type == EventType.TASK_LOOP_STOPPED:
                self.loop_guard_stops.labels(kind=str(event.payload.get("kind"))).inc()
            if event.type == EventType.TASK_TRANSITION:
                outcome = _OUTCOMES.get(str(event.payload.get("to")))
                if outcome is not None:
                    self.tasks_total.labels(outcome=outcome).inc()


_OUTCOMES = {"COMPLETED": "success", "FAILED": "failure"}
