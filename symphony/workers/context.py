"""What a Python handler receives: the job's identity, paths, parameters and key/value store."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class JobContext:
    session: str
    stage: str
    item: str
    attempt: int  # 1 for the first attempt
    input: str | None  # previous stage's output (or the item's own input file for the first stage)
    output: str | None  # where to write: a temporary name, renamed to ``final_output`` on success
    final_output: str | None
    root: str
    params: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)  # the item's metadata from the session file
    kv: Any = None  # JobStore: this job's own key/values in Redis
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("symphony.handler"))
    item_input: str | None = None  # the item's own input file (its session's ``input``), at every stage

    def read_input_json(self) -> Any:
        if not self.input:
            return None
        with open(self.input, encoding="utf-8") as fh:
            return json.load(fh)

    def write_output_json(self, data: Any) -> None:
        if not self.output:
            raise RuntimeError(f"stage {self.stage} has no output path")
        os.makedirs(os.path.dirname(self.output) or ".", exist_ok=True)
        with open(self.output, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
