"""The monitoring files, each checked by a real validator that is shown to reject a broken input too:

- deployment/prometheus/alerts.yaml: ``promtool check rules``; its unit tests alerts.test.yaml: ``promtool test rules``
  (Debian's prometheus 2.42);
- deployment/kubernetes/prometheusrule.yaml: a fresh render of alerts.yaml by scripts/render-prometheusrule.py;
- deployment/grafana/stream-processor.json: ``tsc --strict`` against Grafana's dashboard and panel types
  (@grafana/schema, deployment/grafana/dashboard-types.ts), and every PromQL query parsed by promtool.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deployment.monitoring_tools import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_RULE,
    RENDER_SCRIPT,
    as_promql,
    check_promql,
    dashboard_queries,
    load_dashboard,
    metric_names,
    promtool,
    require_tools,
    validate_dashboard,
    validate_dashboards,
)

#: What the worker exports (README "Operations"), with the histogram and counter series names.
_HISTOGRAMS = ["stream_processor_processing_latency_seconds", "stream_processor_batch_seconds",
               "stream_processor_commit_seconds"]
EXPORTED = {
    "up",
    "stream_processor_messages_in_total", "stream_processor_messages_out_total",
    "stream_processor_messages_failed_total", "stream_processor_commits_total",
    "stream_processor_last_commit_timestamp_seconds", "stream_processor_consumer_lag",
    "stream_processor_assigned_partitions", "stream_processor_restored_records_total",
    "stream_processor_processor_events_total", "stream_processor_pattern_events_total",
    "stream_processor_circuit_state", "stream_processor_broker_up", "stream_processor_broker_last_contact_seconds",
    "stream_processor_info", "process_resident_memory_bytes", "process_cpu_seconds_total",
    *(f"{h}_{suffix}" for h in _HISTOGRAMS for suffix in ("bucket", "sum", "count")),
}

REQUIRED_ALERTS = {
    "StreamProcessorConsumerLagGrowing", "StreamProcessorNoCommits", "StreamProcessorAbortStorm",
    "StreamProcessorDeadLetterRateHigh", "StreamProcessorWorkerDown", "StreamProcessorWorkerAbsent",
    "StreamProcessorBrokerUnreachable", "StreamProcessorCircuitOpen",
}


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    require_tools()


def rules_of(path: Path = ALERTS) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts_of(path: Path = ALERTS) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules_of(path) if "alert" in rule}


# ---------------------------------------------------------------------------------------------------- rules


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_of())} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    tested = promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_labelled_annotated_and_tested_firing_and_quiet():
    alerts = alerts_of()
    assert REQUIRED_ALERTS <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == set(alerts), f"alerts never shown firing: {set(alerts) - fired}"
    quiet = [test["name"] for test in tests
             if {c["alertname"] for c in test.get("alert_rule_test", []) if not c.get("exp_alerts")} == set(alerts)]
    assert quiet, "no test case shows every alert quiet on healthy series"


def test_worker_down_alerts_select_the_job_with_one_editable_matcher():
    alerts = alerts_of()
    for name in ("StreamProcessorWorkerDown", "StreamProcessorWorkerAbsent"):
        assert 'up{job=~".*kafka-streams.*"}' in alerts[name]["expr"], name


def test_promtool_rejects_a_broken_rule_file(tmp_path):
    broken = ALERTS.read_text().replace(
        "expr: stream_processor_broker_up == 0", "expr: stream_processor_broker_up == (0")
    assert broken != ALERTS.read_text()
    path = tmp_path / "alerts.yaml"
    path.write_text(broken)
    checked = promtool("check", "rules", path)
    assert checked.returncode != 0
    assert "StreamProcessorBrokerUnreachable" in checked.stdout + checked.stderr or "parse error" in (
        checked.stdout + checked.stderr)
    path.write_text(ALERTS.read_text().replace("- alert: StreamProcessorWorkerDown", "- alertt: WorkerDown"))
    assert promtool("check", "rules", path).returncode != 0


def test_promtool_unit_tests_catch_a_wrong_alert(tmp_path):
    """A rule that no longer fires (its `for` too long) fails the unit tests."""
    rule = "expr: stream_processor_broker_up == 0\n        for: "
    assert rule + "2m" in ALERTS.read_text()
    (tmp_path / "alerts.yaml").write_text(ALERTS.read_text().replace(rule + "2m", rule + "20m"))
    (tmp_path / "alerts.test.yaml").write_text(ALERTS_TEST.read_text())
    tested = promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "StreamProcessorBrokerUnreachable" in tested.stdout + tested.stderr


# ---------------------------------------------------------------------------------------------------- PrometheusRule


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RENDER_SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_prometheusrule_is_a_fresh_render_of_alerts_yaml():
    fresh = render("--stdout")
    assert fresh.returncode == 0, fresh.stderr
    assert PROMETHEUS_RULE.read_text() == fresh.stdout, "stale: run python scripts/render-prometheusrule.py"
    assert render("--check").returncode == 0
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["namespace"] == "smc-trading"
    assert resource["metadata"]["labels"]["app"] == "kafka-streams"
    assert resource["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_render_check_reports_a_stale_prometheusrule(tmp_path):
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(PROMETHEUS_RULE.read_text().replace("for: 2m", "for: 3m", 1))
    checked = render("--check", "--target", str(stale))
    assert checked.returncode == 1
    assert "stale" in checked.stderr


# ---------------------------------------------------------------------------------------------------- dashboard


def test_the_dashboard_validates_against_grafana_types():
    assert validate_dashboard() == ""


def _first(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in doc["panels"] if p["type"] == kind)


BROKEN = {
    "misspelt panel key": (lambda d: _first(d, "timeseries").update(titel="x"), "titel"),
    "unknown legend mode": (lambda d: _first(d, "timeseries")["options"]["legend"].update(displayMode="lists"),
                            "lists"),
    "stat without colorMode": (lambda d: _first(d, "stat")["options"].pop("colorMode"), "colorMode"),
    "grid width as text": (lambda d: _first(d, "timeseries")["gridPos"].update(w="12"), "number"),
    "misspelt field option": (lambda d: _first(d, "timeseries")["fieldConfig"]["defaults"]["custom"]
                              .update(lineWdth=2), "lineWdth"),
    "query without refId": (lambda d: _first(d, "timeseries")["targets"][0].pop("refId"), "refId"),
    "fixed data source": (lambda d: _first(d, "timeseries")["targets"][0]["datasource"].update(uid="prom1"),
                          "prom1"),
    "state timeline without rowHeight": (lambda d: _first(d, "state-timeline")["options"].pop("rowHeight"),
                                         "rowHeight"),
    "old schemaVersion": (lambda d: d.update(schemaVersion=36), "36"),
    "unknown variable type": (lambda d: d["templating"]["list"][1].update(type="qry"), "qry"),
}


@pytest.fixture(scope="module")
def broken_dashboard_errors() -> dict[str, str]:
    """tsc's errors for each broken variant (one tsc run for all)."""
    docs = []
    for mutate, _ in BROKEN.values():
        doc = copy.deepcopy(load_dashboard())
        mutate(doc)
        docs.append(doc)
    return dict(zip(BROKEN, validate_dashboards(docs), strict=True))


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_validator_rejects_a_broken_dashboard(name, broken_dashboard_errors):
    errors = broken_dashboard_errors[name]
    assert errors, f"{name}: accepted"
    assert "error TS" in errors and BROKEN[name][1] in errors, errors


def test_every_dashboard_query_parses_as_promql():
    queries = dashboard_queries(load_dashboard())
    assert len(queries) >= 25
    checked = check_promql([as_promql(expr) for _, expr in queries])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_the_promql_check_rejects_a_broken_query():
    checked = check_promql(["sum(rate(stream_processor_messages_in_total[5m])", "up"])
    assert checked.returncode != 0
    assert "parse error" in checked.stdout + checked.stderr


def test_dashboard_and_rules_use_only_exported_metrics():
    for where, expr in dashboard_queries(load_dashboard()):
        assert metric_names(expr) <= EXPORTED, f"{where}: {metric_names(expr) - EXPORTED}"
    for rule in rules_of():
        names = metric_names(rule["expr"])
        assert names <= EXPORTED, f"{rule.get('alert') or rule.get('record')}: {names - EXPORTED}"


def test_dashboard_layout_variables_and_panels():
    doc = load_dashboard()
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        own = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not own & cells, f"{p['title']} overlaps another panel"
        cells |= own
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["processor"]["type"] == "query"
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for t in p["targets"]:
                if "stream_processor_" in t["expr"] and "$processor" not in t["expr"]:
                    # worker-wide series (broker, process, info) have no processor label
                    assert not re.search(r"stream_processor_(messages|commit|consumer|processing|pattern)", t["expr"])
    exprs = " ".join(expr for _, expr in dashboard_queries(doc))
    for needed in ("histogram_quantile(0.5", "histogram_quantile(0.99", "stream_processor_processing_latency_seconds",
                   "stream_processor_messages_in_total", "stream_processor_messages_out_total",
                   "stream_processor_messages_failed_total", "stream_processor_consumer_lag",
                   "stream_processor_pattern_events_total", "stream_processor_commits_total",
                   "stream_processor_commit_seconds",
                   "stream_processor_circuit_state", "stream_processor_broker_up", "process_resident_memory_bytes",
                   "process_cpu_seconds_total"):
        assert needed in exprs, needed
    json.dumps(doc)  # plain JSON
