"""Metric names: the ones choreo/observe/metrics.py exports, and the ones a PromQL string reads.

The dashboard and the alert rules may only read what the services export; a renamed metric
would otherwise leave an empty panel or an alert that can never fire.
"""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from choreo.observe import metrics

# Sample names a scrape exposes per metric type (prometheus_client drops `_total` from a
# counter's family name and adds it back on the sample).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def exported_families() -> dict[str, str]:
    """Family name -> type of every metric defined in choreo.observe.metrics."""
    families: dict[str, str] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families[family.name] = family.type
    return families


def exported_names() -> set[str]:
    """Every sample name a scrape of a Choreo service can show."""
    return {
        name + suffix for name, kind in exported_families().items() for suffix in SUFFIXES[kind]
    }


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?", re.IGNORECASE)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}


def referenced_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = _STRINGS.sub(" ", expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING, _OFFSET, _NUMBERS):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if re.match(r"\s*\(", text[match.end() :]):  # a function or aggregation call
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,")


def template_names(query: str) -> set[str]:
    """Metric names a Grafana ``label_values(metric, label)`` variable query reads."""
    return set(_LABEL_VALUES.findall(query))
