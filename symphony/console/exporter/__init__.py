"""Symphony's Prometheus exporter (``symphony metrics serve``): a front end over the engine's
public API, like the console. ``docs/metrics.md`` lists what it exports and how counters stay
monotonic."""
from .catalogue import CATALOGUE, Metric
from .collector import Monotonic, SymphonyCollector
from .reading import Reading, ReadingCache, read_everything
from .service import DEFAULT_BIND, DEFAULT_PORT, Exporter

__all__ = ["CATALOGUE", "DEFAULT_BIND", "DEFAULT_PORT", "Exporter", "Metric", "Monotonic", "Reading", "ReadingCache",
           "SymphonyCollector", "read_everything"]
