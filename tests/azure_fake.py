"""An offline Azure for the collector's tests: azure-core's real ``RequestsTransport`` over a
``requests`` session whose adapter answers from recorded JSON (tests/data/azure) and keeps every
request it got, so tests can assert on what the real client code sends."""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.response import HTTPResponse

DATA = Path(__file__).resolve().parent / "data" / "azure"
SUB = "5f1c2d3e-4a5b-4c6d-8e7f-901234567890"
RG = "scan-rg"
RECORDED_END = datetime(2025, 6, 2, 10, 15, tzinfo=timezone.utc).timestamp()  # the window the recordings cover
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-access-token"


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def vmss_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}"


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _shift(text: str, seconds: float) -> str:
    def move(m: re.Match) -> str:
        t = datetime.strptime(m.group(0), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() + seconds
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return _ISO.sub(move, text)


@dataclass
class Seen:
    method: str
    url: str
    host: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def resource_ids(self) -> list[str]:
        return list((self.body or {}).get("resourceids", []))


def _end_of(params: dict[str, str]) -> float | None:
    end = params.get("endtime")
    if not end:
        return None
    return datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp()


class AzureFake(BaseAdapter):
    """Routes: (method, path regex) -> handler(Seen) -> (status, headers, body or file name).

    The recorded metric answers are shifted in time so that they cover the window each request
    asks for, as the real service would answer."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []
        self.routes: list[tuple[str, re.Pattern, Callable[[Seen], tuple]]] = []

    def route(self, method: str, path: str, handler: Callable[[Seen], tuple] | tuple) -> "AzureFake":
        fn = handler if callable(handler) else (lambda _seen, h=handler: h)
        self.routes.insert(0, (method, re.compile(path), fn))  # later routes win
        return self

    def send(self, request, **kwargs):  # noqa: D401 - requests' adapter interface
        parts = urlsplit(request.url)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = None
        if request.body:
            raw = request.body.decode() if isinstance(request.body, bytes) else request.body
            body = json.loads(raw)
        seen = Seen(request.method, request.url, parts.hostname or "", parts.path, params, dict(request.headers), body)
        self.seen.append(seen)
        for method, pattern, handler in self.routes:
            if method == request.method and pattern.search(parts.path):
                status, headers, payload = handler(seen)
                break
        else:
            status, headers, payload = 404, {}, {"error": {"code": "NoRoute", "message": f"no route for {parts.path}"}}
        if isinstance(payload, str) and payload.endswith(".json"):
            text = (DATA / payload).read_text()
            end = _end_of(params)
            if end is not None and payload.startswith("metrics_batch"):
                text = _shift(text, end - RECORDED_END)
                # like the service, answer only for the resources asked
                wanted = {r.lower() for r in seen.resource_ids}
                doc = json.loads(text)
                doc["values"] = [v for v in doc["values"] if v["resourceid"].lower() in wanted]
                text = json.dumps(doc)
        else:
            text = json.dumps(payload)
        data = text.encode()
        all_headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(data)),
                       "x-ms-request-id": "00000000-0000-0000-0000-000000000001", **headers}
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                           429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "")
        response.headers = CaseInsensitiveDict(all_headers)
        # the body as the wire would give it (azure-core reads ``raw``)
        response.raw = HTTPResponse(body=io.BytesIO(data), headers=all_headers, status=status, reason=response.reason,
                                    preload_content=False, decode_content=False)
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    # helpers ---------------------------------------------------------------------------------------
    def metric_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/metrics:getBatch")]

    def arm_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.host == "management.azure.com"]


def transport_for(fake: AzureFake):
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    session.mount("https://", fake)
    session.mount("http://", fake)
    return RequestsTransport(session=session, session_owner=False)


@dataclass
class FakeCredential:
    """A TokenCredential: hands out a fixed token, or raises ``fail`` (e.g. an expired secret)."""

    fail: BaseException | None = None
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        if self.fail is not None:
            raise self.fail
        return AccessToken(TOKEN, int(time.time()) + 3600)


def batch_answer(seen: Seen) -> tuple:
    """200 with the recorded totals or per-instance answer, only for the resources asked."""
    name = "metrics_batch_instances.json" if seen.params.get("filter") else "metrics_batch_totals.json"
    return 200, {}, name


def standard(fake: AzureFake) -> AzureFake:
    """The happy path: the group lists two scale sets in westeurope, metrics answer."""
    base = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachineScaleSets"
    fake.route("GET", re.escape(base) + "$", (200, {}, "arm_vmss_list.json"))
    fake.route("GET", re.escape(base) + "/[^/]+$", (404, {}, "arm_404_vmss.json"))
    fake.route("GET", re.escape(base) + "/win-vmss$", (200, {}, "arm_vmss_get_win.json"))
    fake.route("POST", r"/metrics:getBatch$", batch_answer)
    return fake
