"""What went wrong while talking to Azure, in one clear sentence each (never a secret)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Mapping

from symphony.engine import redact

# problem kinds
AUTH, FORBIDDEN, THROTTLED, NOT_FOUND, NETWORK, SERVICE, EMPTY, FAILED = (
    "auth", "forbidden", "throttled", "not_found", "network", "service", "empty", "error")
FATAL = (AUTH, FORBIDDEN, THROTTLED, NETWORK)  # problems that every other call would hit too


@dataclass(frozen=True)
class CollectProblem:
    kind: str
    message: str
    retry_after_s: float | None = None  # what the service asked for (429 Retry-After)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an error's message, redacted."""
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), type(exc).__name__)
    return redact(line[:limit])


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the service asks us to wait: ``retry-after-ms``, ``x-ms-retry-after-ms``, or
    ``Retry-After`` in seconds or as an HTTP date."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) / 1000)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException, what: str) -> CollectProblem:
    """One clear message for an error raised while ``what`` (e.g. "reading metrics of vmss-a")."""
    try:
        from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                           ServiceRequestError, ServiceResponseError)
    except ImportError:  # pragma: no cover - the collector cannot be built without them
        return CollectProblem(FAILED, f"{what}: {first_line(exc)}")
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    detail = first_line(exc)
    headers = getattr(response, "headers", None)
    if status == 401 or (isinstance(exc, ClientAuthenticationError) and status is None):
        return CollectProblem(AUTH, f"Azure credentials are missing, were rejected or have expired, while {what}: "
                                    f"{detail}. Sign in again (az login), renew the service principal's secret "
                                    "(AZURE_CLIENT_SECRET) or check the managed identity")
    if status == 403:
        return CollectProblem(FORBIDDEN, f"the Azure identity is not allowed (403) to do this, while {what}: "
                                         f"{detail}. Give it the 'Monitoring Reader' role (and 'Reader' to list "
                                         "scale sets) on the resource group")
    if status == 429:
        return CollectProblem(THROTTLED, f"Azure is throttling us (429), while {what}", retry_after_s(headers))
    if status == 404 or isinstance(exc, ResourceNotFoundError):
        return CollectProblem(NOT_FOUND, f"not found, while {what}: {detail}")
    if isinstance(status, int) and status >= 500:
        return CollectProblem(SERVICE, f"Azure answered {status}, while {what}: {detail}", retry_after_s(headers))
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return CollectProblem(NETWORK, f"cannot reach Azure, while {what}: {detail}")
    if isinstance(exc, HttpResponseError):
        return CollectProblem(FAILED, f"Azure answered {status}, while {what}: {detail}")
    return CollectProblem(FAILED, f"unexpected error while {what}: {type(exc).__name__}: {detail}")
