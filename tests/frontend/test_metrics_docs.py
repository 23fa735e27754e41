"""docs/metrics.md and docs/alerts.example.yml name only metrics that /metrics serves,
and the table lists every one it serves."""

from __future__ import annotations

import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from frontend.metrics import FrontendCounters, render
from tests.frontend.test_metrics import broker_stats
from tests.support.procs import ROOT


def served_names() -> set[str]:
    counters = FrontendCounters()
    counters.refuse(415, "unsupported_format")
    text = render(broker_stats(), counters)[0].decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names.add(family.name + ("_total" if family.type == "counter" else
                                 "_info" if family.type == "info" else ""))
    return names


def test_every_served_metric_is_documented_and_the_docs_name_no_other():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(qmc_[a-z_]+)`", doc, re.MULTILINE))
    served = served_names()
    families = {n for n in served if not n.endswith(("_bucket", "_sum", "_count", "_created"))}
    assert documented == families


def test_alert_rules_use_served_metrics_only():
    rules = yaml.safe_load((ROOT / "docs" / "alerts.example.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"qmc_[a-z_]+", e)}
    assert used and used <= served_names()
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"QwenMaskQueueNearlyFull", "QwenMaskNoWorkerAlive",
            "QwenMaskDeadLettersGrowing"} <= alerts
