"""deploy/grafana/orchestrator.json: an importable dashboard whose every query names a metric
the real app serves at /metrics, and which shows every ``orchestrator_*`` metric the app serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "orchestrator.json"
GRID_COLUMNS = 24
DATASOURCE = "DS_PROMETHEUS"
PROMETHEUS = {"type": "prometheus", "uid": f"${{{DATASOURCE}}}"}

# PromQL functions are case-sensitive; its keywords and aggregation operators are not.
PROMQL_FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "info",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    ]
)
PROMQL_KEYWORDS = frozenset(
    [
        "avg",
        "bottomk",
        "count",
        "count_values",
        "group",
        "limit_ratio",
        "limitk",
        "max",
        "min",
        "quantile",
        "stddev",
        "stdvar",
        "sum",
        "topk",
        "and",
        "or",
        "unless",
        "atan2",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "start",
        "end",
        "inf",
        "nan",
    ]
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
# Grafana's own variables ($job, ${job:regex}, $__rate_interval), outside strings.
_GRAFANA_VARIABLE = re.compile(r"\$\{[^{}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")  # [5m], subqueries [1h:5m], legacy [[variable]]
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# A number or duration starts with a digit (or a dot), so `5m` and `1e3` are never names.
_TOKEN = re.compile(r"(?P<number>\.?\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)|(?P<other>\S)")
_VARIABLE_USE = re.compile(r"\$\{([A-Za-z_]\w*)|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+),\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads. Raises ValueError on what it cannot read
    (unbalanced brackets, a selector naming its metric by ``__name__``) instead of guessing."""
    text = _COMMENT.sub(" ", _STRING.sub(" ", expr))
    if "__name__" in text:
        raise ValueError(f"a selector by __name__ hides the metric's name: {expr!r}")
    text = _GRAFANA_VARIABLE.sub(" ", text)
    for pattern in (_MATCHERS, _RANGE, _LABEL_LIST):
        while True:  # innermost first, until nothing nested is left
            text, count = pattern.subn(" ", text)
            if not count:
                break
    leftover = set(text) & set("{}[]\"'`$")
    if text.count("(") != text.count(")"):
        leftover.add("()")
    if leftover:
        raise ValueError(f"cannot read {expr!r}: unbalanced {' '.join(sorted(leftover))}")
    return {
        name
        for token in _TOKEN.finditer(text)
        if (name := token.group("name"))
        and name not in PROMQL_FUNCTIONS
        and name.lower() not in PROMQL_KEYWORDS
    }


def unknown_metrics(exprs: list[str], served: set[str]) -> dict[str, set[str]]:
    """Each expression that reads a metric not in ``served``, with the names it misses."""
    unknown = {expr: metric_names(expr) - served for expr in exprs}
    return {expr: names for expr, names in unknown.items() if names}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded inside a collapsed row."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: the panels' targets and the query variables' selectors."""
    exprs = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        label_values = _LABEL_VALUES.match(text)
        exprs.append(label_values.group("selector") if label_values else text)
    return exprs


def sample_names(family: Metric) -> set[str]:
    """The series names Prometheus stores for a family: what it served, and what its type
    will serve once a labelled child exists (a counter `x` is scraped as `x_total`)."""
    by_type = {
        "counter": {f"{family.name}_total"},
        "histogram": {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")},
        "summary": {family.name, f"{family.name}_sum", f"{family.name}_count"},
        "info": {f"{family.name}_info"},
    }
    return {sample.name for sample in family.samples} | by_type.get(family.type, {family.name})


async def served_families(client: httpx.AsyncClient) -> list[Metric]:
    """What the real app serves at /metrics after a few requests gave the histogram samples."""
    created = await client.post("/api/v1/sessions", json={"title": "t", "initial_prompt": "p"})
    assert created.status_code == 201, created.text
    assert (await client.get(f"/api/v1/sessions/{created.json()['id']}")).status_code == 200
    assert (await client.get("/api/v1/sessions/not-a-uuid")).status_code == 422
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return list(text_string_to_metric_families(response.text))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("orchestrator_active_sessions", {"orchestrator_active_sessions"}),
        ('max(orchestrator_active_agents{job=~"$job"})', {"orchestrator_active_agents"}),
        (
            "histogram_quantile(0.95, sum by (le) "
            '(rate(http_request_duration_seconds_bucket{job=~"$job"}[5m])))',
            {"http_request_duration_seconds_bucket"},
        ),
        (
            'sum(rate(orchestrator_tasks_total{outcome="failure"}[$__rate_interval])) '
            "/ ignoring(outcome) group_left sum without (outcome, instance) "
            "(rate(orchestrator_tasks_total[1h30m:1m] offset -5m))",
            {"orchestrator_tasks_total"},
        ),
        (
            'sum by (status_class) (label_replace(rate(a_count{status=~"(4|5).."}[5m]), '
            '"status_class", "${1}xx", "status", "([45])..")) > bool 1e-3 '
            "and on (job) b_total unless c @ start() or D",
            {"a_count", "b_total", "c", "D"},
        ),
        # Keywords ignore case, functions do not: `Rate` is no function, so it is reported.
        ("SUM BY (le) (Rate(x)) # rate(commented_out[5m])", {"Rate", "x"}),
    ],
)
def test_metric_names_reads_only_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    [
        'sum(rate({__name__=~"orchestrator_.+"}[5m]))',
        'sum(rate(orchestrator_events_total{type="x"[5m]))',
        "rate(orchestrator_events_total[5m]",
    ],
)
def test_metric_names_refuses_what_it_cannot_read(expr: str) -> None:
    with pytest.raises(ValueError, match=r"cannot read|__name__"):
        metric_names(expr)


def test_a_misspelt_metric_is_reported() -> None:
    served = {"orchestrator_tasks_total", "http_request_duration_seconds_bucket"}
    good = "sum by (outcome) (rate(orchestrator_tasks_total[5m]))"
    misspelt = "sum by (outcome) (rate(orchestrator_task_total[5m]))"
    family_not_sample = "sum by (outcome) (rate(orchestrator_tasks[5m]))"
    function_typo = "histogram_quantil(0.5, sum by (le) (http_request_duration_seconds_bucket))"
    assert unknown_metrics([good, misspelt, family_not_sample, function_typo], served) == {
        misspelt: {"orchestrator_task_total"},
        family_not_sample: {"orchestrator_tasks"},
        function_typo: {"histogram_quantil"},
    }


def test_dashboard_is_importable() -> None:
    dashboard = load_dashboard()
    assert isinstance(dashboard["title"], str)
    assert dashboard["title"]
    assert isinstance(dashboard["uid"], str)
    assert re.fullmatch(r"[\w-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    inputs = {inp["name"]: inp for inp in dashboard["__inputs"]}
    assert inputs[DATASOURCE]["type"] == "datasource"
    assert inputs[DATASOURCE]["pluginId"] == "prometheus"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables[DATASOURCE]["type"] == "datasource"
    assert variables[DATASOURCE]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == PROMETHEUS, variable["name"]
    for expr in queries(dashboard):
        for match in _VARIABLE_USE.finditer(expr):
            name = next(group for group in match.groups() if group)
            assert name.startswith("__") or name in variables, f"${name} undefined in {expr}"


def test_every_panel_is_placed_and_queried() -> None:
    ids: set[int] = set()
    boxes: list[tuple[str, int, int, int, int]] = []
    for panel in panels(load_dashboard()):
        title = panel.get("title")
        assert isinstance(title, str), panel
        assert title, panel
        assert panel["id"] not in ids, f"{title}: panel id {panel['id']} is used twice"
        ids.add(panel["id"])
        grid = panel["gridPos"]
        x, y, w, h = (grid[key] for key in ("x", "y", "w", "h"))
        assert all(isinstance(n, int) for n in (x, y, w, h)), title
        assert min(x, y) >= 0, title
        assert min(w, h) > 0, title
        assert x + w <= GRID_COLUMNS, title
        for other, ox, oy, ow, oh in boxes:
            overlap = x < ox + ow and ox < x + w and y < oy + oh and oy < y + h
            assert not overlap, f"{title!r} overlaps {other!r}"
        boxes.append((title, x, y, w, h))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == PROMETHEUS, title
        targets = panel["targets"]
        assert targets, f"{title}: no query"
        for target in targets:
            assert isinstance(target["expr"], str), title
            assert target["expr"].strip(), title
            assert target["datasource"] == PROMETHEUS, title
            assert isinstance(target["refId"], str), title
            assert target["refId"], title
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: refIds repeat: {ref_ids}"


async def test_every_queried_metric_is_served(client: httpx.AsyncClient) -> None:
    served = {sample.name for family in await served_families(client) for sample in family.samples}
    exprs = queries(load_dashboard())
    assert exprs
    assert unknown_metrics(exprs, served) == {}
    # Compared with the series Prometheus stores, not the families: a counter's bare name fails.
    wrong = ["rate(orchestrator_tasks[5m])", "rate(orchestrator_task_total[5m])"]
    assert set(unknown_metrics(wrong, served)) == set(wrong)


async def test_every_orchestrator_metric_has_a_panel(client: httpx.AsyncClient) -> None:
    shown = {name for expr in queries(load_dashboard()) for name in metric_names(expr)}
    families = [
        family
        for family in await served_families(client)
        if family.name.startswith("orchestrator_")
    ]
    assert families
    missing = [family.name for family in families if not sample_names(family) & shown]
    assert missing == [], f"served at /metrics but on no panel: {missing}"
