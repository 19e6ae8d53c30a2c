"""The Grafana dashboard: provisioned where compose mounts it, every panel's PromQL parses
(``promtool check rules`` over recording rules made from the panels), names only metrics a real
service exports, and returns data from a real Prometheus scraping two real services under load."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from cluster_support import (
    DASHBOARD,
    DOCKER,
    ROOT,
    Child,
    PanelQuery,
    Tokens,
    dashboard,
    dashboard_queries,
    dashboard_variables,
    drive_load,
    finite_values,
    load_yaml,
    metric_names,
    query,
    run_tool,
    tool,
    variables_used,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

PROVISIONING = DOCKER / "grafana" / "provisioning"
DATA_TIMEOUT = 30.0  # seconds for every panel query to return a finite value
WINDOW = "30s"  # $__rate_interval in the live queries: spans the load and the scrapes after it
# What a pool's health is read from: the share of it recently committed, the rows an answer
# lagged behind the newest commit, and the reward calls that renew it.
POOL_HEALTH = {
    "distreward_pool_freshness",
    "distreward_served_lag_rows",
    "distreward_pool_turnover_calls",
}


def test_dashboard_is_provisioned_from_the_folder_compose_mounts() -> None:
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "distreward.yaml")["providers"]
    mounts = load_yaml(ROOT / "compose.yaml")["services"]["grafana"]["volumes"]
    assert f"./{DASHBOARD.parent.relative_to(ROOT)}:{provider['options']['path']}:ro" in mounts


def test_every_panel_uses_the_provisioned_datasource() -> None:
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yaml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    uids = {p["datasource"]["uid"] for p in panels}
    uids |= {t["datasource"]["uid"] for p in panels for t in p["targets"]}
    assert uids == {source["uid"]}


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (endpoint, status) (rate(a_total{status=~"[45].."}[1m])) / ignoring (status)'
        ' group_left histogram_quantile(0.5, sum by (le) (rate(b_bucket{x="c"}[5m] offset 1m)))'
    )
    assert metric_names(expr) == {"a_total", "b_bucket"}


def test_every_variable_a_panel_names_is_the_dashboards_own() -> None:
    defined = dashboard_variables()
    for panel in dashboard()["panels"]:
        texts = [panel["title"], *(t["expr"] for t in panel["targets"])]
        used = set().union(*map(variables_used, texts)) - {"__rate_interval"}
        assert used <= set(defined), (panel["title"], sorted(used - set(defined)))
    assert defined and all(float(value) > 0 for value in defined.values()), defined


def test_the_pools_freshness_lag_and_turnover_are_on_the_dashboard() -> None:
    used = set().union(*(metric_names(q.expr) for q in dashboard_queries("1m")))
    assert used >= POOL_HEALTH, sorted(POOL_HEALTH - used)
    # the turnover also in trainer steps: the calls over the ranks the viewer sets
    (steps,) = [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        if "ranks" in variables_used(target["expr"])
    ]
    ranks = dashboard_variables()["ranks"]
    assert metric_names(steps.replace("$ranks", ranks)) == {"distreward_pool_turnover_calls"}


def test_every_panel_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:panel_{i}:{q.ref}", "expr": q.expr}
        for i, q in enumerate(dashboard_queries("1m"))
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_tool(tool("promtool"), "check", "rules", path)
    assert f"{len(rules)} rules found" in out


def test_panels_name_only_metrics_the_service_exports(
    services: list[Child], tokens: Tokens
) -> None:
    drive_load([services[0].url], tokens, requests=9, pause=0.0)
    text = httpx.get(f"{services[0].url}/metrics", timeout=10.0).text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    used = set().union(*(metric_names(q.expr) for q in dashboard_queries("1m")))
    assert used and used <= exported, sorted(used - exported)


@pytest.mark.parametrize("target", dashboard_queries(WINDOW), ids=lambda q: f"{q.panel}/{q.ref}")
def test_panel_query_returns_data_from_prometheus(prometheus: Child, target: PanelQuery) -> None:
    values = wait_for(
        target.expr, lambda: finite_values(query(prometheus, target.expr)), DATA_TIMEOUT
    )
    assert min(values) >= 0  # rates, quantiles, FD, versions, gauges: none is negative
