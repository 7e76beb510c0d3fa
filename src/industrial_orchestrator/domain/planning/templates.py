"""The decomposition templates, as data: each a keyword table and an ordered list of steps.

``microservice``, ``crud``, ``security`` and ``ui`` are engineering orders for the kinds of
work prompts ask for most; ``generic`` (design -> implement -> test -> review) is the plan
when none of them fits, and the plan a heavy step is split with. The keywords and their
weights feed ``template_choice``; the step texts hold ``{subject}``, filled in by
``decomposition``. Nothing here computes: changing a plan is changing this data.
"""

from __future__ import annotations

from ..tasks.task import TaskType
from .plans import Step, Template

GENERIC = "generic"

GENERIC_STEPS = (
    Step(
        "design",
        "Design the approach for {subject}",
        "Decide how to build {subject}: components, interfaces, data and risks.",
        TaskType.DESIGN,
        ("system_design",),
        1.0,
    ),
    Step(
        "implement",
        "Implement {subject}",
        "Write the code for {subject} following the agreed design.",
        TaskType.CODE_GENERATION,
        ("code_generation",),
        4.0,
        ("design",),
    ),
    Step(
        "test",
        "Test {subject}",
        "Write and run tests covering {subject}, including its edge cases.",
        TaskType.TESTING,
        ("testing",),
        2.0,
        ("implement",),
    ),
    Step(
        "review",
        "Review {subject}",
        "Review the change for {subject}: correctness, readability, tests.",
        TaskType.REVIEW,
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
                    TaskType.DESIGN,
                    ("api_design", "system_design"),
                    2.0,
                ),
                Step(
                    "skeleton",
                    "Scaffold the {subject} service",
                    "Create the {subject} service skeleton: project layout, configuration, "
                    "health check, logging and dependency wiring.",
                    TaskType.CODE_GENERATION,
                    ("code_generation",),
                    2.0,
                    ("contract",),
                ),
                Step(
                    "data",
                    "Build the data layer of the {subject} service",
                    "Model the {subject} data, write the migrations and the repositories.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "database"),
                    4.0,
                    ("skeleton",),
                ),
                Step(
                    "logic",
                    "Implement the {subject} business logic",
                    "Implement the {subject} domain rules and use cases on top of the data "
                    "layer, with explicit errors for every refused operation.",
                    TaskType.CODE_GENERATION,
                    ("code_generation",),
                    10.0,
                    ("data",),
                ),
                Step(
                    "endpoints",
                    "Expose the {subject} API endpoints",
                    "Implement the endpoints of the {subject} API contract over the business "
                    "logic: validation, status codes, error mapping.",
                    TaskType.CODE_GENERATION,
                    ("api_design", "code_generation"),
                    4.0,
                    ("contract", "logic"),
                ),
                Step(
                    "unit_tests",
                    "Write unit tests for the {subject} business logic",
                    "Cover the {subject} domain rules and use cases with fast unit tests.",
                    TaskType.TESTING,
                    ("testing",),
                    3.0,
                    ("logic",),
                ),
                Step(
                    "integration_tests",
                    "Write integration tests for the {subject} API",
                    "Exercise the {subject} endpoints against a real database, including "
                    "error cases and the contract's examples.",
                    TaskType.TESTING,
                    ("testing",),
                    3.0,
                    ("endpoints",),
                ),
                Step(
                    "deploy",
                    "Containerise and deploy the {subject} service",
                    "Write the container image, configuration and deployment manifests for "
                    "the {subject} service, with readiness and liveness probes.",
                    TaskType.DEPLOYMENT,
                    ("devops",),
                    2.0,
                    ("unit_tests", "integration_tests"),
                ),
                Step(
                    "review",
                    "Review the {subject} service",
                    "Review the {subject} service as a whole: contract fidelity, code, tests "
                    "and operability.",
                    TaskType.REVIEW,
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
                    TaskType.DESIGN,
                    ("database",),
                    1.5,
                ),
                Step(
                    "model",
                    "Implement the {subject} data model and migration",
                    "Write the {subject} model and the migration that creates its schema.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "database"),
                    2.0,
                    ("schema",),
                ),
                Step(
                    "repository",
                    "Implement the {subject} repository",
                    "Implement create, read (one and paginated list), update and delete for "
                    "{subject}, with optimistic concurrency on update.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "database"),
                    3.0,
                    ("model",),
                ),
                Step(
                    "endpoints",
                    "Expose the CRUD endpoints for {subject}",
                    "Implement the create, read, list, update and delete endpoints for "
                    "{subject}: request validation, status codes, error mapping.",
                    TaskType.CODE_GENERATION,
                    ("api_design", "code_generation"),
                    5.0,
                    ("repository",),
                ),
                Step(
                    "security_review",
                    "Review the security of the {subject} endpoints",
                    "Check the {subject} endpoints for authorisation gaps, injection, mass "
                    "assignment and data exposure.",
                    TaskType.SECURITY_AUDIT,
                    ("security_audit",),
                    1.5,
                    ("endpoints",),
                ),
                Step(
                    "tests",
                    "Test the {subject} CRUD endpoints",
                    "Test every {subject} operation end to end, including not-found, "
                    "validation and conflict cases.",
                    TaskType.TESTING,
                    ("testing",),
                    3.0,
                    ("endpoints",),
                ),
                Step(
                    "docs",
                    "Document the {subject} API",
                    "Document the {subject} endpoints with request and response examples.",
                    TaskType.DOCUMENTATION,
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
                    TaskType.SECURITY_AUDIT,
                    ("security_audit", "system_design"),
                    2.0,
                ),
                Step(
                    "dependency_audit",
                    "Audit the dependencies of {subject}",
                    "Check the dependencies used by {subject} for known vulnerabilities and "
                    "unmaintained packages.",
                    TaskType.SECURITY_AUDIT,
                    ("security_audit",),
                    1.5,
                    ("threat_model",),
                ),
                Step(
                    "static_analysis",
                    "Run static analysis on {subject}",
                    "Run security linters and static analysis over {subject} and triage every "
                    "finding.",
                    TaskType.SECURITY_AUDIT,
                    ("security_audit", "static_analysis"),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "auth_review",
                    "Review authentication and authorisation in {subject}",
                    "Review how {subject} authenticates callers and enforces permissions: "
                    "sessions, tokens, privilege checks on every path.",
                    TaskType.SECURITY_AUDIT,
                    ("security_audit",),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "input_validation",
                    "Review input validation in {subject}",
                    "Review how {subject} validates and encodes input: injection, XSS, path "
                    "traversal, deserialisation.",
                    TaskType.SECURITY_AUDIT,
                    ("security_audit",),
                    2.0,
                    ("threat_model",),
                ),
                Step(
                    "remediation",
                    "Fix the security findings in {subject}",
                    "Fix the findings of the audits of {subject}, most severe first.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "security_audit"),
                    5.0,
                    ("dependency_audit", "static_analysis", "auth_review", "input_validation"),
                ),
                Step(
                    "verification",
                    "Write security regression tests for {subject}",
                    "Prove each fix in {subject} with a test that fails without it.",
                    TaskType.TESTING,
                    ("security_audit", "testing"),
                    2.0,
                    ("remediation",),
                ),
                Step(
                    "report",
                    "Write the security report for {subject}",
                    "Summarise the threats, findings, fixes and residual risks of {subject}.",
                    TaskType.DOCUMENTATION,
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
                    TaskType.DESIGN,
                    ("ux_design",),
                    2.0,
                ),
                Step(
                    "components",
                    "Build the UI components for {subject}",
                    "Build the reusable components the {subject} screens need, from the "
                    "existing component library where possible.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "frontend"),
                    4.0,
                    ("ux_design",),
                ),
                Step(
                    "pages",
                    "Build the pages for {subject}",
                    "Assemble the {subject} pages and routes from the components.",
                    TaskType.CODE_GENERATION,
                    ("code_generation", "frontend"),
                    5.0,
                    ("components",),
                ),
                Step(
                    "integration",
                    "Connect the {subject} UI to state and the API",
                    "Wire the {subject} pages to the application state and the backend API, "
                    "with loading and error handling.",
                    TaskType.CODE_GENERATION,
                    ("api_integration", "code_generation", "frontend"),
                    3.0,
                    ("pages",),
                ),
                Step(
                    "accessibility",
                    "Review the accessibility of the {subject} UI",
                    "Check the {subject} UI for keyboard use, labels, contrast and screen "
                    "reader support (WCAG 2.1 AA).",
                    TaskType.REVIEW,
                    ("accessibility",),
                    1.5,
                    ("integration",),
                ),
                Step(
                    "ui_tests",
                    "Write UI tests for {subject}",
                    "Write component and end-to-end tests for the {subject} UI.",
                    TaskType.TESTING,
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
            GENERIC_STEPS,
        ),
    )
}

TEMPLATE_NAMES = tuple(TEMPLATES)
