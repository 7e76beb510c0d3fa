"""Decomposition: turn a prompt into a plan of tasks with an engineering order.

Five templates are data (``TEMPLATES``): ``microservice``, ``crud``, ``security``, ``ui``
and the ``generic`` design -> implement -> test -> review plan. A template is chosen by
keyword matching over the prompt (``score_templates`` / ``choose_template``) or named
explicitly; its steps are filled in with the prompt's subject ("Design the database schema
for customer invoices"). Everything here is deterministic: the same input gives the same
plan.

Recursion (``max_depth`` 2 or 3): a code-generation step heavier than
``SPLIT_EFFORT_HOURS`` is split again with the generic plan specialised to it; the
children's keys are prefixed with the parent's key (``logic.implement``). In the tree:

* a child without a dependency among its siblings inherits its parent's dependencies, so
  it cannot start before the work its parent waited for;
* the parent depends on all of its children: it can only become READY once they are
  finished (it is a summary node, its effort the whole estimate; the dependency view
  weighs it 0 so that effort is not counted twice).

So the flat dependency graph of a tree is acyclic and every key points inside the tree
(``validate_plan`` checks both, and is the gate for plans that come from elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .errors import InvalidInput
from .task_graph import CycleDetected, check_known, find_cycle
from .tasks import TaskType, normalise_capabilities

# A template must score above this to be chosen over the generic plan.
CHOOSE_THRESHOLD = 0.35
MIN_DEPTH, MAX_DEPTH = 1, 3
# Code-generation steps heavier than this (hours) are split again when depth allows.
SPLIT_EFFORT_HOURS = 4.0
SPLIT_TYPES = frozenset({TaskType.CODE_GENERATION})
MIN_EFFORT_HOURS = 0.25
GENERIC = "generic"

_SUBJECT_FALLBACK = "the requested change"
_SUBJECT_MAX_WORDS = 6
_SUBJECT_MAX_CHARS = 80
_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task of a plan, before it is stored; ``depends_on`` holds keys of the plan."""

    key: str
    title: str
    description: str
    task_type: TaskType
    required_capabilities: tuple[str, ...]
    estimated_effort: float
    depends_on: tuple[str, ...] = ()
    parent_key: str | None = None
    files: tuple[str, ...] = ()
    """Paths the task is expected to edit (an architect's plan may say)."""


@dataclass(frozen=True, slots=True)
class Step:
    """A template step; ``{subject}`` in the texts is replaced by the prompt's subject."""

    key: str
    title: str
    description: str
    task_type: TaskType
    capabilities: tuple[str, ...]
    effort: float
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    summary: str
    keywords: Mapping[str, float]
    """Phrase -> weight in (0, 1]; weights combine as independent evidence."""
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class TemplateScore:
    template: str
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TemplateChoice:
    template: str
    score: float
    matched: tuple[str, ...]
    explicit: bool


@dataclass(frozen=True, slots=True)
class Decomposition:
    """A plan as a tree: top-level tasks have ``parent_key`` None; tasks in pre-order."""

    choice: TemplateChoice
    subject: str
    tasks: tuple[PlannedTask, ...]
    max_depth: int

    def children(self, parent_key: str | None) -> tuple[PlannedTask, ...]:
        return tuple(t for t in self.tasks if t.parent_key == parent_key)

    def get(self, key: str) -> PlannedTask:
        for task in self.tasks:
            if task.key == key:
                return task
        raise KeyError(key)


TT = TaskType

_GENERIC_STEPS = (
    Step(
        "design",
        "Design the approach for {subject}",
        "Decide how to build {subject}: components, interfaces, data and risks.",
        TT.DESIGN,
        ("system_design",),
        1.0,
    ),
    Step(
        "implement",
        "Implement {subject}",
        "Write the code for {subject} following the agreed design.",
        TT.CODE_GENERATION,
        ("code_generation",),
        4.0,
        ("design",),
    ),
    Step(
        "test",
        "Test {subject}",
        "Write and run tests covering {subject}, including its edge cases.",
        TT.TESTING,
        ("testing",),
        2.0,
        ("implement",),
    ),
    Step(
        "review",
        "Review {subject}",
        "Review the change for {subject}: correctness, readability, tests.",
        TT.REVIEW,
        ("code_review",),
        1.0,
        ("test",),
    ),
)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "microservice",
            "API contract, service skeleton, data, logic, endpoints, tests, deployment",
            {
                "microservice": 0.8,
                "micro-service": 0.8,
                "micro service": 0.8,
                "service": 0.3,
                "grpc": 0.4,
                "api gateway": 0.4,
                "service mesh": 0.4,
                "event-driven": 0.3,
                "kafka": 0.3,
                "rabbitmq": 0.3,
                "message queue": 0.3,
                "docker": 0.3,
                "kubernetes": 0.3,
                "k8s": 0.3,
                "container": 0.2,
                "deploy": 0.2,
                "rest api": 0.2,
            },
            (
                Step(
                    "contract",
                    "Design the API contract for the {subject} service",
                    "Define the {subject} service's resources, operations, payloads, errors and "
                    "versioning (e.g. an OpenAPI document), and its boundaries with other "
                    "services.",
                    TT.DESIGN,
                    ("api_design", "system_design"),
                    2.0,
                ),
                Step(
                    "skeleton",
                    "Scaffold the {subject} service",
                    "Create the {subject} service skeleton: project layout, configuration, "
                    "health check, logging and dependency wiring.",
                    TT.CODE_GENERATION,
                    ("code_generation",),
                    2.0,
                    ("contract",),
                ),
                Step(
                    "data",
                    "Build the data layer of the {subject} service",
                    "Model the {subject} data, write the migrations and the repositories.",
                    TT.CODE_GENERATION,
                    ("code_generation", "database"),
                    4.0,
                    ("skeleton",),
                ),
                Step(
                    "logic",
                    "Implement the {subject} business logic",
                    "Implement the {subject} domain rules and use cases on top of the data "
                    "layer, with explicit errors for every refused operation.",
                    TT.CODE_GENERATION,
                    ("code_generation",),
                    10.0,
                    ("data",),
                ),
                Step(
                    "endpoints",
                    "Expose the {subject} API endpoints",
                    "Implement the endpoints of the {subject} API contract over the business "
                    "logic: validation, status codes, error mapping.",
                    TT.CODE_GENERATION,
                    ("api_design", "code_generation"),
                    4.0,
                    ("contract", "logic"),
                ),
                Step(
                    "unit_tests",
                    "Write unit tests for the {subject} business logic",
                    "Cover the {subject} domain rules and use cases with fast unit tests.",
                    TT.TESTING,
                    ("testing",),
                    3.0,
                    ("logic",),
                ),
                Step(
                    "integration_tests",
                    "Write integration tests for the {subject} API",
                    "Exercise the {subject} endpoints against a real database, including "
                    "error cases and the contract's examples.",
                    TT.TESTING,
                    ("testing",),
                    3.0,
                    ("endpoints",),
                ),
                Step(
                    "deploy",
                    "Containerise and deploy the {subject} service",
                    "Write the container image, configuration and deployment manifests for "
                    "the {subject} service, with readiness and liveness probes.",
                    TT.DEPLOYMENT,
                    ("devops",),
                    2.0,
                    ("unit_tests", "integration_tests"),
                ),
                Step(
                    "review",
                    "Review the {subject} service",
                    "Review the {subject} service as a whole: contract fidelity, code, tests "
                    "and operability.",
                    TT.REVIEW,
                    ("code_review",),
                    1.5,
                    ("deploy",),
                ),
            ),
        ),
        Template(
            "crud",
            "schema, model, repository, endpoints, tests, security review, docs",
            {
                "crud": 0.8,
                "create read update delete": 0.8,
                "create, read, update": 0.8,
                "rest api": 0.3,
                "api": 0.15,
                "endpoint": 0.2,
                "database": 0.3,
                "postgresql": 0.3,
                "postgres": 0.3,
                "mysql": 0.3,
                "sqlite": 0.3,
                "sql": 0.2,
                "table": 0.2,
                "schema": 0.2,
                "model": 0.15,
                "repository": 0.2,
                "manage": 0.2,
                "admin": 0.2,
                "entity": 0.2,
                "resource": 0.2,
            },
            (
                Step(
                    "schema",
                    "Design the database schema for {subject}",
                    "Design the tables, columns, keys, constraints and indexes that store "
                    "{subject}.",
                    TT.DESIGN,
                    ("database",),
                    1.5,
                ),
                Step(
                    "model",
                    "Implement the {subject} data model and migration",
                    "Write the {subject} model and the migration that creates its schema.",
                    TT.CODE_GENERATION,
                    ("code_generation", "database"),
                    2.0,
                    ("schema",),
                ),
                Step(
                    "repository",
                    "Implement the {subject} repository",
                    "Implement create, read (one and paginated list), update and delete for "
                    "{subject}, with optimistic concurrency on update.",
                    TT.CODE_GENERATION,
                    ("code_generation", "database"),
                    3.0,
                    ("model",),
                ),
                Step(
                    "endpoints",
                    "Expose the CRUD endpoints for {subject}",
                    "Implement the create, read, list, update and delete endpoints for "
                    "{subject}: request validation, status codes, error mapping.",
                    TT.CODE_GENERATION,
                    ("api_design", "code_generation"),
                    5.0,
                    ("repository",),
                ),
                Step(
                    "security_review",
                    "Review the security of the {subject} endpoints",
                    "Check the {subject} endpoints for authorisation gaps, injection, mass "
                    "assignment and data exposure.",
                    TT.SECURITY_AUDIT,
                    ("security_audit",),
                    1.5,
                    ("endpoints",),
                ),
                Step(
                    "tests",
                    "Test the {subject} CRUD endpoints",
                    "Test every {subject} operation end to end, including not-found, "
                    "validation and conflict cases.",
                    TT.TESTING,
                    ("testing",),
                    3.0,
                    ("endpoints",),
                ),
                Step(
                    "docs",
                    "Document the {subject} API",
                    "Document the {subject} endpoints with request and response examples.",
                    TT.DOCUMENTATION,
                    ("documentation",),
                    1.0,
                    ("tests", "security_review"),
                ),
            ),
        ),
        Template(
            "security",
            "threat model, parallel audits, remediation, verification, report",
            {
                "security": 0.6,
                "audit": 0.5,
                "owasp": 0.7,
                "vulnerability": 0.6,
                "vulnerabilities": 0.6,
                "penetration test": 0.7,
                "pentest": 0.7,
                "threat model": 0.7,
                "xss": 0.5,
                "csrf": 0.5,
                "injection": 0.5,
                "cve": 0.5,
                "harden": 0.5,
                "secure": 0.4,
                "secrets": 0.3,
                "encryption": 0.3,
                "authentication": 0.2,
                "authorization": 0.2,
                "authorisation": 0.2,
                "login": 0.2,
            },
            (
                Step(
                    "threat_model",
                    "Threat-model {subject}",
                    "Map the assets, entry points, trust boundaries and attackers of "
                    "{subject}, and rank the threats.",
                    TT.SECURITY_AUDIT,
                    ("security_audit", "system_design"),
                    2.0,
                ),
                Step(
                    "dependency_audit",
                    "Audit the dependencies of {subject}",
                    "Check the dependencies used by {subject} for known vulnerabilities and "
                    "unmaintained packages.",
                    TT.SECURITY_AUDIT,
                    ("security_audit",),
                    1.5,
                    ("threat_model",),
                ),
                Step(
                    "static_analysis",
                    "Run static analysis on {subject}",
                    "Run security linters and static analysis over {subject} and triage every "
                    "finding.",
                    TT.SECURITY_AUDIT,
                    ("security_audit", "static_analysis"),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "auth_review",
                    "Review authentication and authorisation in {subject}",
                    "Review how {subject} authenticates callers and enforces permissions: "
                    "sessions, tokens, privilege checks on every path.",
                    TT.SECURITY_AUDIT,
                    ("security_audit",),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "input_validation",
                    "Review input validation in {subject}",
                    "Review how {subject} validates and encodes input: injection, XSS, path "
                    "traversal, deserialisation.",
                    TT.SECURITY_AUDIT,
                    ("security_audit",),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "remediation",
                    "Fix the security findings in {subject}",
                    "Fix the findings of the audits of {subject}, most severe first.",
                    TT.CODE_GENERATION,
                    ("code_generation", "security_audit"),
                    5.0,
                    ("dependency_audit", "static_analysis", "auth_review", "input_validation"),
                ),
                Step(
                    "verification",
                    "Write security regression tests for {subject}",
                    "Prove each fix in {subject} with a test that fails without it.",
                    TT.TESTING,
                    ("security_audit", "testing"),
                    2.0,
                    ("remediation",),
                ),
                Step(
                    "report",
                    "Write the security report for {subject}",
                    "Summarise the threats, findings, fixes and residual risks of {subject}.",
                    TT.DOCUMENTATION,
                    ("documentation", "security_audit"),
                    1.0,
                    ("verification",),
                ),
            ),
        ),
        Template(
            "ui",
            "UX design, components, pages, state/API integration, accessibility, UI tests",
            {
                "ui": 0.6,
                "user interface": 0.6,
                "frontend": 0.6,
                "front-end": 0.6,
                "react": 0.6,
                "vue": 0.6,
                "angular": 0.6,
                "svelte": 0.6,
                "next.js": 0.5,
                "ux": 0.5,
                "dashboard": 0.4,
                "page": 0.3,
                "screen": 0.3,
                "component": 0.3,
                "form": 0.2,
                "css": 0.4,
                "tailwind": 0.4,
                "responsive": 0.3,
                "accessibility": 0.3,
                "layout": 0.2,
                "button": 0.2,
            },
            (
                Step(
                    "ux_design",
                    "Design the user experience for {subject}",
                    "Sketch the flows, layouts and states (loading, empty, error) of the "
                    "{subject} screens.",
                    TT.DESIGN,
                    ("ux_design",),
                    2.0,
                ),
                Step(
                    "components",
                    "Build the UI components for {subject}",
                    "Build the reusable components the {subject} screens need, from the "
                    "existing component library where possible.",
                    TT.CODE_GENERATION,
                    ("code_generation", "frontend"),
                    4.0,
                    ("ux_design",),
                ),
                Step(
                    "pages",
                    "Build the pages for {subject}",
                    "Assemble the {subject} pages and routes from the components.",
                    TT.CODE_GENERATION,
                    ("code_generation", "frontend"),
                    5.0,
                    ("components",),
                ),
                Step(
                    "integration",
                    "Connect the {subject} UI to state and the API",
                    "Wire the {subject} pages to the application state and the backend API, "
                    "with loading and error handling.",
                    TT.CODE_GENERATION,
                    ("api_integration", "code_generation", "frontend"),
                    3.0,
                    ("pages",),
                ),
                Step(
                    "accessibility",
                    "Review the accessibility of the {subject} UI",
                    "Check the {subject} UI for keyboard use, labels, contrast and screen "
                    "reader support (WCAG 2.1 AA).",
                    TT.REVIEW,
                    ("accessibility",),
                    1.5,
                    ("integration",),
                ),
                Step(
                    "ui_tests",
                    "Write UI tests for {subject}",
                    "Write component and end-to-end tests for the {subject} UI.",
                    TT.TESTING,
                    ("frontend", "testing"),
                    3.0,
                    ("accessibility",),
                ),
            ),
        ),
        Template(
            GENERIC,
            "design -> implement -> test -> review",
            {},
            _GENERIC_STEPS,
        ),
    )
}

TEMPLATE_NAMES = tuple(TEMPLATES)


def _keyword_pattern(phrase: str) -> re.Pattern[str]:
    # Word boundaries that also work for phrases ending in punctuation ("next.js");
    # spaces match any run of whitespace or hyphens; an optional plural "s"/"es".
    words = [re.escape(word) for word in phrase.split()]
    return re.compile(r"(?<!\w)" + r"[\s-]+".join(words) + r"(?:e?s)?(?!\w)", re.IGNORECASE)


_KEYWORD_PATTERNS: dict[str, tuple[tuple[str, float, re.Pattern[str]], ...]] = {
    name: tuple((phrase, w, _keyword_pattern(phrase)) for phrase, w in t.keywords.items())
    for name, t in TEMPLATES.items()
}


def score_templates(prompt: str) -> list[TemplateScore]:
    """Every template but ``generic`` scored against ``prompt``, best first.

    Each matched keyword is independent evidence: score = 1 - prod(1 - weight), so it
    lies in [0, 1). Ties keep the order of ``TEMPLATES``.
    """
    scores: list[TemplateScore] = []
    for name, patterns in _KEYWORD_PATTERNS.items():
        if name == GENERIC:
            continue
        matched = tuple(phrase for phrase, _, pattern in patterns if pattern.search(prompt))
        missing = 1.0
        for phrase, weight, _ in patterns:
            if phrase in matched:
                missing *= 1.0 - weight
        scores.append(TemplateScore(name, round(1.0 - missing, 4), matched))
    return sorted(scores, key=lambda s: -s.score)


def _known_template(name: str) -> str:
    normalised = name.strip().lower()
    if normalised not in TEMPLATES:
        raise InvalidInput(
            f"unknown template {name!r}; known templates: {', '.join(TEMPLATE_NAMES)}",
            {"field": "template", "value": name, "known": list(TEMPLATE_NAMES)},
        )
    return normalised


def choose_template(prompt: str, explicit: str | None = None) -> TemplateChoice:
    """The template for ``prompt``: ``explicit`` if given, else the best above the threshold.

    Falls back to ``generic`` when no template scores above ``CHOOSE_THRESHOLD``. Raises
    ``InvalidInput`` listing the known names for an unknown explicit template.
    """
    scores = score_templates(prompt)
    if explicit is not None:
        name = _known_template(explicit)
        for score in scores:
            if score.template == name:
                return TemplateChoice(name, score.score, score.matched, explicit=True)
        return TemplateChoice(name, 0.0, (), explicit=True)
    best = scores[0]
    if best.score > CHOOSE_THRESHOLD:
        return TemplateChoice(best.template, best.score, best.matched, explicit=False)
    return TemplateChoice(GENERIC, 0.0, (), explicit=False)


# --- subject extraction --------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD = r"[^\W_][\w.+#/'-]*"
_STOP_WORDS = _words(
    "with using in on that which who where so to from by via into and or but as at for of "
    "against about regarding across within backed written built including plus should must "
    "will"
)
_LEADING_FILLERS = _words(
    "a an the our my your their its this that these those new simple basic small full complete some"
)
_VERB_WORDS = _words(
    "build create implement add write make develop design fix refactor set up audit review "
    "secure harden assess pentest scan check test improve support expose scaffold connect "
    "wire integrate containerise containerize deploy document run"
)
_VERBS = "|".join([*sorted(_VERB_WORDS - {"set", "up"}), "set up"])
_FOR = re.compile(r"\b(?:for|of|managing|to manage)\s+(?P<rest>.+)", re.IGNORECASE)
_VERB_OBJECT = re.compile(rf"\b(?:{_VERBS})\s+(?P<rest>.+)", re.IGNORECASE)
_BEFORE_SERVICE = re.compile(
    rf"(?P<before>(?:{_WORD}\s+){{0,2}}{_WORD})\s+(?:micro-?\s?)?service\b", re.IGNORECASE
)
_TECH_NOISE = _words(
    "crud api rest react vue angular svelte ui frontend front-end dashboard page pages "
    "microservice service endpoint endpoints"
)
# Subject patterns scan the first sentence only, and only this much of it.
_SCAN_CHARS = 500


def _noun_phrase(text: str) -> str:
    """The first few words of ``text`` up to a stop word, without leading verbs and fillers
    and without technology words ("CRUD API", "React")."""
    words: list[str] = []
    for match in re.finditer(rf"{_WORD}|[^\w\s]", text):
        word = match.group(0).rstrip(".'-")
        lowered = word.lower()
        if not word or not word[0].isalnum() or lowered in _STOP_WORDS:
            if words:
                break
            continue
        if not words and (lowered in _LEADING_FILLERS or lowered in _VERB_WORDS):
            continue
        words.append(word)
        if len(words) == _SUBJECT_MAX_WORDS:
            break
    return " ".join(w for w in words if w.lower() not in _TECH_NOISE)


def _subject_of_title(title: str) -> str:
    """A task title read as a subject: "Implement the payments logic" -> "payments logic"."""
    words = title.split()
    if words and words[0].lower() in _VERB_WORDS:
        words = words[1:]
    while words and words[0].lower() in _LEADING_FILLERS:
        words = words[1:]
    subject = " ".join(words) or " ".join(title.split()) or _SUBJECT_FALLBACK
    return _clip(subject, _SUBJECT_MAX_CHARS)


def extract_subject(prompt: str, template: str = GENERIC, fallback: str | None = None) -> str:
    """The thing the prompt is about, in its own words ("customer invoices").

    A few patterns in order, depending on the template (``<x> microservice``, ``audit <x>``,
    ``... for <x>``); ``fallback`` (e.g. the parent task's title) or a neutral phrase when
    nothing matches. Only the first sentence of the prompt is read.
    """
    first = re.split(r"(?<=[.!?])\s+|\n", prompt.strip(), maxsplit=1)[0][:_SCAN_CHARS]
    candidates: list[str] = []
    if template == "microservice":
        match = _BEFORE_SERVICE.search(first)
        if match:
            candidates.append(_noun_phrase(match.group("before")))
    order = (_VERB_OBJECT, _FOR) if template in ("security", GENERIC) else (_FOR, _VERB_OBJECT)
    for pattern in order:
        match = pattern.search(first)
        if match:
            candidates.append(_noun_phrase(match.group("rest")))
    for candidate in [*candidates, " ".join((fallback or "").split())]:
        if candidate:
            return _clip(candidate, _SUBJECT_MAX_CHARS)
    return _SUBJECT_FALLBACK


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- planning ------------------------------------------------------------------------------


def _excerpt(prompt: str) -> str:
    return _clip(" ".join(prompt.split()), _EXCERPT_CHARS)


def _describe(step: Step, subject: str, request: str) -> str:
    description = step.description.format(subject=subject)
    return f'{description} Request: "{request}"' if request else description


def _plan_steps(
    steps: Sequence[Step],
    *,
    subject: str,
    request: str,
    prefix: str = "",
    parent_key: str | None = None,
    inherited: tuple[str, ...] = (),
    extra_capabilities: Iterable[str] = (),
    total_effort: float | None = None,
) -> list[PlannedTask]:
    """The steps as planned tasks; efforts are scaled to ``total_effort`` when given."""
    extra = tuple(extra_capabilities)
    scale = 1.0
    if total_effort is not None:
        scale = total_effort / sum(step.effort for step in steps)
    planned = []
    for step in steps:
        deps = tuple(prefix + dep for dep in step.depends_on) or inherited
        capabilities = step.capabilities
        if step.task_type == TaskType.CODE_GENERATION:
            capabilities = capabilities + extra
        planned.append(
            PlannedTask(
                key=prefix + step.key,
                title=step.title.format(subject=subject),
                description=_describe(step, subject, request),
                task_type=step.task_type,
                required_capabilities=normalise_capabilities(capabilities),
                estimated_effort=max(MIN_EFFORT_HOURS, round(step.effort * scale, 2)),
                depends_on=deps,
                parent_key=parent_key,
            )
        )
    return planned


def _should_split(task: PlannedTask) -> bool:
    return task.task_type in SPLIT_TYPES and task.estimated_effort > SPLIT_EFFORT_HOURS


def _expand(tasks: list[PlannedTask], depth_left: int, request: str) -> list[PlannedTask]:
    """Split heavy tasks with the generic plan, ``depth_left`` more levels; pre-order."""
    result: list[PlannedTask] = []
    for task in tasks:
        if depth_left <= 0 or not _should_split(task):
            result.append(task)
            continue
        children = _plan_steps(
            _GENERIC_STEPS,
            subject=_subject_of_title(task.title),
            request=request,
            prefix=task.key + ".",
            parent_key=task.key,
            inherited=task.depends_on,
            extra_capabilities=task.required_capabilities,
            total_effort=task.estimated_effort,
        )
        result.append(replace(task, depends_on=(*task.depends_on, *(c.key for c in children))))
        result.extend(_expand(children, depth_left - 1, request))
    return result


def _check_depth(max_depth: int) -> None:
    if not MIN_DEPTH <= max_depth <= MAX_DEPTH:
        raise InvalidInput(
            f"max_depth must be between {MIN_DEPTH} and {MAX_DEPTH}, got {max_depth}",
            {"field": "max_depth", "value": max_depth, "min": MIN_DEPTH, "max": MAX_DEPTH},
        )


def decompose(
    prompt: str, *, template: str | None = None, max_depth: int = 1, title: str | None = None
) -> Decomposition:
    """Plan ``prompt`` as a task tree with the chosen (or named) template.

    ``max_depth`` 1 gives the template's steps; 2 and 3 split heavy code-generation steps
    again (see the module docstring). ``title`` (the parent task's or session's title) is
    the subject when none can be read from the prompt. Raises ``InvalidInput`` for an
    unknown template or a depth outside 1..3.
    """
    _check_depth(max_depth)
    choice = choose_template(prompt, template)
    subject = extract_subject(prompt, choice.template, fallback=title)
    request = _excerpt(prompt)
    top = _plan_steps(TEMPLATES[choice.template].steps, subject=subject, request=request)
    tasks = tuple(_expand(top, max_depth - 1, request))
    validate_plan(tasks)
    return Decomposition(choice, subject, tasks, max_depth)


# Which templates ``decompose_task`` may pick by itself for a task of each type: a
# documentation task that mentions "endpoints" is not a CRUD API to build.
_BUILD_TEMPLATES = ("microservice", "crud", "security", "ui")
_AUTO_TEMPLATES: dict[TaskType, tuple[str, ...]] = {
    TaskType.CODE_GENERATION: _BUILD_TEMPLATES,
    TaskType.DESIGN: _BUILD_TEMPLATES,
    TaskType.SECURITY_AUDIT: ("security",),
    TaskType.REVIEW: ("security",),
}


def _focused_steps(task_type: TaskType, capabilities: tuple[str, ...]) -> tuple[Step, ...]:
    """The plan for splitting a task that is not code: scope it, do it, check it."""
    return (
        Step(
            "scope",
            "Scope {subject}",
            "Gather what {subject} needs: inputs, constraints, open questions.",
            TT.RESEARCH,
            ("research",),
            1.0,
        ),
        Step(
            "execute",
            "Carry out {subject}",
            "Do the work of {subject} within the agreed scope.",
            task_type,
            capabilities or (task_type.value,),
            3.0,
            ("scope",),
        ),
        Step(
            "check",
            "Check the outcome of {subject}",
            "Check that the result of {subject} is complete and correct.",
            TT.REVIEW,
            ("code_review",),
            1.0,
            ("execute",),
        ),
    )


def decompose_task(
    title: str,
    description: str,
    task_type: TaskType,
    *,
    required_capabilities: Iterable[str] = (),
    estimated_effort: float | None = None,
    template: str | None = None,
    max_depth: int = 1,
) -> Decomposition:
    """Split one existing task into subtasks (``POST /tasks/{id}/decompose``).

    The template is chosen from the title and description unless named, among those that
    suit the task's type (any for design and code generation, ``security`` for audits and
    reviews, none for the other types). When none fits,
    the plan is specialised to the task: a code-generation task gets the generic plan, any
    other type a scope -> carry out -> check plan whose middle step keeps the task's type;
    the task's capabilities go to its implementation step and, given
    ``estimated_effort``, the subtasks share that effort.

    Top-level subtasks have ``parent_key`` None: the service links them to the task
    (``parent_id``), gives the subtasks without dependencies the task's own dependencies
    and makes the task depend on its subtasks, as ``decompose`` does inside a tree.
    """
    _check_depth(max_depth)
    text = f"{title}\n{description}".strip()
    choice = choose_template(text, template)
    if not choice.explicit and choice.template not in _AUTO_TEMPLATES.get(task_type, ()):
        choice = TemplateChoice(GENERIC, 0.0, (), explicit=False)
    request = _excerpt(description or title)
    capabilities = normalise_capabilities(required_capabilities)
    if choice.template == GENERIC:
        subject = _subject_of_title(title)
        steps: Sequence[Step] = (
            _GENERIC_STEPS if task_type in SPLIT_TYPES else _focused_steps(task_type, capabilities)
        )
        top = _plan_steps(
            steps,
            subject=subject,
            request=request,
            extra_capabilities=capabilities,
            total_effort=estimated_effort,
        )
    else:
        subject = extract_subject(text, choice.template, fallback=title)
        top = _plan_steps(TEMPLATES[choice.template].steps, subject=subject, request=request)
    tasks = tuple(_expand(top, max_depth - 1, request))
    validate_plan(tasks)
    return Decomposition(choice, subject, tasks, max_depth)


def validate_plan(tasks: Sequence[PlannedTask]) -> None:
    """Check a plan's shape; the gate for plans produced elsewhere (e.g. an architect agent).

    Raises ``InvalidInput`` for an empty or duplicate key, a dependency or parent key
    outside the plan, a non-positive effort or a task without capabilities, and
    ``CycleDetected`` for a dependency cycle (or a task that is its own ancestor).
    """
    keys: dict[str, PlannedTask] = {}
    for task in tasks:
        if not task.key:
            raise InvalidInput("every planned task needs a key", {"field": "key"})
        if task.key in keys:
            raise InvalidInput(f"duplicate task key {task.key!r}", {"key": task.key})
        if not task.estimated_effort > 0:
            raise InvalidInput(
                f"task {task.key!r} needs a positive estimated effort",
                {"key": task.key, "estimated_effort": task.estimated_effort},
            )
        if not task.required_capabilities:
            raise InvalidInput(
                f"task {task.key!r} needs at least one capability", {"key": task.key}
            )
        keys[task.key] = task
    check_known(keys, {task.key: task.depends_on for task in tasks})
    for task in tasks:
        if task.parent_key is not None and task.parent_key not in keys:
            raise InvalidInput(
                f"task {task.key!r} has unknown parent {task.parent_key!r}",
                {"key": task.key, "parent_key": task.parent_key},
            )
    cycle = find_cycle({task.key: task.depends_on for task in tasks})
    if cycle is None:
        parents = {task.key: (task.parent_key,) for task in tasks if task.parent_key}
        cycle = find_cycle(parents)
    if cycle is not None:
        raise CycleDetected(cycle)
