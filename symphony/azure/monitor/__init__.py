"""VM scale-set metrics from Azure Monitor, with no VM extension: ``symphony metrics collect``, or
a thread in the console (``symphony-tui --azure``).

``config`` (what to read, from flags and the environment), ``arm`` (credentials, finding the scale
sets, the metrics clients), ``samples`` (Azure's answers into samples), ``sinks`` (Redis through
the engine, files for analysis), ``problems`` (one clear sentence per failure) and ``collector``
(the loop). It uses only the engine's public API; the engine never imports it.
"""
from .collector import AzureCollector, CollectResult
from .config import AzureMonitorConfig
from .problems import CollectProblem

__all__ = ["AzureCollector", "AzureMonitorConfig", "CollectProblem", "CollectResult"]
