"""Reading an exporter's /metrics the way Prometheus does (prometheus-client's text parser)."""
from __future__ import annotations

import urllib.request
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def fetch(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(every sample by name and labels, the type of every family by name)."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples, types


def scrape(base_url: str) -> Samples:
    return parse(fetch(base_url + "/metrics"))[0]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def names(samples: Iterable[tuple[str, frozenset]]) -> set[str]:
    return {n for n, _ in samples}
