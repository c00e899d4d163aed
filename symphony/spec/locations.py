"""Where outputs live, as the spec files say it: a local path, or an object-store URL
(``az://container/prefix``, ``abfs://...``, ``s3://...``). The one definition of which is which;
the engine's stores (:mod:`symphony.engine.stores`) use it too."""
from __future__ import annotations

import re

_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]+)://")


def url_scheme(path: str | None) -> str | None:
    """The scheme of an object-store URL (``az``), or None for a local path (``C:\\x`` too: a
    scheme has two letters at least)."""
    if not path:
        return None
    match = _URL.match(path)
    return match.group("scheme").lower() if match else None


def is_url(path: str | None) -> bool:
    """True for an object-store URL (``file://`` is a local path)."""
    return url_scheme(path) not in (None, "file")
