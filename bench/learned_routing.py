"""Learned routing against tier-only routing, on a recorded mix of tasks.

What it measures
----------------
A deterministic synthetic record (fixed seed) is replayed through the pure routing
functions twice: ``domain.agents.routing.route`` as it ranks without records (tier, load,
success rate, last assignment: *tier-only*), and with each agent's record for the task's
type built by ``domain.agents.records.summarise`` from the attempts finished so far
(*learned*). No database, no HTTP: this measures the decisions, not their cost.

- **Fleet.** Six agents holding the same capability, all of one agent type (so the
  task-type preference narrows nothing), each at most 2 tasks at a time. Each has a true
  success probability per task type, a cost per attempt and a typical duration: a
  premium generalist (good at everything, expensive), three specialists (very good at one
  type, mediocre or bad at others, cheap), a cheap weak generalist and a documentation
  specialist who is bad at everything else.
- **Work.** ``--tasks`` (4,000) tasks, 40 % code generation, 25 % testing, 20 % review,
  15 % documentation, arrive in rounds of 8. Each round routes the waiting tasks one by
  one (a routed task takes a slot: full agents are skipped, load counts), then every
  attempt ends: it succeeds with the chosen agent's true probability for the type. A
  failed task is retried the next round, up to 3 attempts (``TASK_MAX_ATTEMPTS``), then
  counts as failed.
- **Fair draws.** Whether attempt *k* of task *i* succeeds on agent *j* is one fixed
  random draw for (*i*, *k*, *j*), so both policies face the same luck.

Reported per policy: attempts, the share of attempts that failed, the share of tasks
that failed for good, cost per completed task (every attempt's cost, failed ones too,
over the tasks completed) and the median duration of a successful attempt, plus who did
each task type.

Run with ``.venv/bin/python bench/learned_routing.py [--tasks 4000] [--seed 7] [--json]``.
"""

from __future__ import annotations

import random
import statistics
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from harness.main import bench_parser
from harness.report import print_json
from industrial_orchestrator.domain.agents.agent import AgentKind, new_agent
from industrial_orchestrator.domain.agents.records import (
    WINDOW,
    AgentRecord,
    FinishedAttempt,
    summarise,
)
from industrial_orchestrator.domain.agents.routing import NoAgentAvailable, route
from industrial_orchestrator.domain.tasks.task import TaskType

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CAPABILITY = "python"
ROUND_SIZE = 8
MAX_ATTEMPTS = 3
CAPACITY = 2

CODE, TESTS, REVIEW, DOCS = (
    TaskType.CODE_GENERATION,
    TaskType.TESTING,
    TaskType.REVIEW,
    TaskType.DOCUMENTATION,
)
MIX = {CODE: 40, TESTS: 25, REVIEW: 20, DOCS: 15}


@dataclass(frozen=True)
class Profile:
    """An agent's truth, unknown to routing."""

    name: str
    success: dict[TaskType, float]
    cost_usd: float
    duration_ms: int


FLEET = (
    Profile("atlas", {CODE: 0.93, TESTS: 0.93, REVIEW: 0.93, DOCS: 0.93}, 0.12, 60_000),
    Profile("birch", {CODE: 0.91, TESTS: 0.55, REVIEW: 0.60, DOCS: 0.80}, 0.03, 50_000),
    Profile("cedar", {CODE: 0.50, TESTS: 0.95, REVIEW: 0.75, DOCS: 0.70}, 0.04, 40_000),
    Profile("delta", {CODE: 0.60, TESTS: 0.60, REVIEW: 0.92, DOCS: 0.85}, 0.05, 45_000),
    Profile("ember", {CODE: 0.65, TESTS: 0.65, REVIEW: 0.65, DOCS: 0.65}, 0.02, 55_000),
    Profile("fjord", {CODE: 0.45, TESTS: 0.45, REVIEW: 0.45, DOCS: 0.97}, 0.02, 30_000),
)


@dataclass
class Outcome:
    policy: str
    tasks: int = 0
    completed: int = 0
    failed: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    cost_usd: float = 0.0
    durations: list[int] = field(default_factory=list)
    shares: dict[TaskType, Counter[str]] = field(default_factory=dict)

    @property
    def attempt_failure_rate(self) -> float:
        return self.failed_attempts / self.attempts

    @property
    def task_failure_rate(self) -> float:
        return self.failed / self.tasks

    @property
    def cost_per_completed_task(self) -> float:
        return self.cost_usd / self.completed if self.completed else float("nan")

    @property
    def median_success_ms(self) -> float:
        return statistics.median(self.durations) if self.durations else float("nan")

    def share(self, task_type: TaskType) -> dict[str, float]:
        done = self.shares[task_type]
        total = sum(done.values())
        return {name: n / total for name, n in sorted(done.items())} if total else {}

    def figures(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "tasks": self.tasks,
            "completed": self.completed,
            "failed": self.failed,
            "attempts": self.attempts,
            "attempt_failure_rate": self.attempt_failure_rate,
            "task_failure_rate": self.task_failure_rate,
            "cost_per_completed_task_usd": self.cost_per_completed_task,
            "median_success_ms": self.median_success_ms,
            "shares": {t.value: self.share(t) for t in self.shares},
        }


def recorded_mix(count: int, seed: int) -> list[TaskType]:
    rng = random.Random(f"mix:{seed}")
    return rng.choices(list(MIX), weights=list(MIX.values()), k=count)


def succeeds(seed: int, task: int, attempt: int, agent: int, p: float) -> bool:
    return random.Random(f"{seed}:{task}:{attempt}:{agent}").random() < p


def jitter(seed: int, task: int, attempt: int, base: int) -> int:
    return round(base * random.Random(f"t{seed}:{task}:{attempt}").uniform(0.5, 1.5))


def replay(policy: str, mix: list[TaskType], seed: int) -> Outcome:
    learned = policy == "learned"
    profiles = {UUID(int=i + 1): p for i, p in enumerate(FLEET)}
    index = {agent_id: i for i, agent_id in enumerate(profiles)}
    agents = {
        agent_id: new_agent(
            id=agent_id,
            name=p.name,
            agent_type="generalist",
            capabilities=[CAPABILITY],
            kind=AgentKind.EXTERNAL,
            max_concurrent_tasks=CAPACITY,
            now=T0,
        )
        for agent_id, p in profiles.items()
    }
    history: dict[tuple[UUID, TaskType], deque[FinishedAttempt]] = {}
    outcome = Outcome(policy, tasks=len(mix), shares={t: Counter() for t in MIX})
    waiting: deque[tuple[int, int]] = deque()  # (task, attempts so far)
    arrivals = iter(enumerate(mix))
    clock = T0
    while True:
        for (arrival, _), _ in zip(arrivals, range(ROUND_SIZE), strict=False):
            waiting.append((arrival, 0))
        if not waiting:
            return outcome
        clock += timedelta(minutes=1)
        records: dict[TaskType, dict[UUID, AgentRecord]] = {}
        if learned:
            done = summarise(a for window in history.values() for a in window)
            for (agent_id, task_type), record in done.items():
                records.setdefault(task_type, {})[agent_id] = record
        started: list[tuple[int, int, UUID]] = []
        for _ in range(len(waiting)):
            task, tried = waiting.popleft()
            try:
                decision = route(
                    list(agents.values()),
                    required_capabilities=[CAPABILITY],
                    task_type=mix[task],
                    records=records.get(mix[task]) if learned else None,
                )
            except NoAgentAvailable:  # every slot taken this round: wait for the next
                waiting.append((task, tried))
                continue
            chosen = decision.chosen
            busy = chosen.tasks_in_progress + 1
            agents[chosen.id] = chosen.evolve(
                tasks_in_progress=busy, current_load=busy / CAPACITY, last_assigned_at=clock
            )
            started.append((task, tried + 1, chosen.id))
        for task, attempt, agent_id in started:
            profile, task_type = profiles[agent_id], mix[task]
            ok = succeeds(seed, task, attempt, index[agent_id], profile.success[task_type])
            took = jitter(seed, task, attempt, profile.duration_ms)
            agent = agents[agent_id]
            agents[agent_id] = agent.evolve(
                tasks_in_progress=agent.tasks_in_progress - 1,
                current_load=(agent.tasks_in_progress - 1) / CAPACITY,
                success_count=agent.success_count + ok,
                failure_count=agent.failure_count + (not ok),
            )
            window = history.setdefault((agent_id, task_type), deque(maxlen=WINDOW))
            window.append(FinishedAttempt(agent_id, task_type, ok, took, profile.cost_usd))
            outcome.attempts += 1
            outcome.cost_usd += profile.cost_usd
            outcome.shares[task_type][profile.name] += 1
            if ok:
                outcome.completed += 1
                outcome.durations.append(took)
            else:
                outcome.failed_attempts += 1
                if attempt < MAX_ATTEMPTS:
                    waiting.append((task, attempt))
                else:
                    outcome.failed += 1


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")
    mix = recorded_mix(args.tasks, args.seed)
    results = [replay(policy, mix, args.seed) for policy in ("tier-only", "learned")]
    if args.json:
        figures = [r.figures() for r in results]
        print_json({"tasks": args.tasks, "seed": args.seed, "results": figures})
        return 0
    counts = Counter(mix)
    print(
        f"Learned vs tier-only routing: {args.tasks} tasks ("
        + ", ".join(f"{t.value} {counts[t]}" for t in MIX)
        + f"), {len(FLEET)} agents, rounds of {ROUND_SIZE}, seed {args.seed}"
    )
    header = (
        f"{'policy':<10} {'attempts':>8} {'failed attempts':>16} {'failed tasks':>13} "
        f"{'$/completed task':>17} {'median success':>15}"
    )
    print(header)
    for r in results:
        print(
            f"{r.policy:<10} {r.attempts:>8} {r.attempt_failure_rate:>16.1%} "
            f"{r.task_failure_rate:>13.2%} {r.cost_per_completed_task:>17.4f} "
            f"{r.median_success_ms / 1000:>14.1f}s"
        )
    print("\nWho did each task type (share of attempts):")
    for r in results:
        for task_type in MIX:
            top = sorted(r.share(task_type).items(), key=lambda kv: -kv[1])[:3]
            listed = ", ".join(f"{name} {share:.0%}" for name, share in top)
            print(f"  {r.policy:<10} {task_type.value:<16} {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
