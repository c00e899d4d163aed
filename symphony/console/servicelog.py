"""How a front end that runs as a service reports: the exporter, the SLURM tracker, the Azure
Monitor collector and the web console's server."""
from __future__ import annotations

import argparse
import logging
from typing import Callable

from symphony.engine import configure_logging, redact


def service_log(args: argparse.Namespace, name: str, logger: str) -> Callable[[str], None]:
    """For a verb that runs as a service (the exporter, the SLURM tracker, the Azure collector):
    its log lines name the process (``name``, the JSON lines' ``worker``), its own logger says at
    least INFO (it reports its start, its stop and its troubles), and what it reports as it runs
    goes where its log goes: printed lines with ``--log-format text``, INFO records (one JSON
    object a line) with ``--log-format json``. Returns the function that reports a line."""
    fmt = getattr(args, "log_format", "text")
    configure_logging(getattr(args, "log_level", "WARNING"), fmt, name=name)
    own = logging.getLogger(logger)
    if own.getEffectiveLevel() > logging.INFO:
        own.setLevel(logging.INFO)
    if fmt == "json":
        return lambda line: own.info("%s", line)

    def say(line: str) -> None:
        print(redact(line), flush=True)

    return say
