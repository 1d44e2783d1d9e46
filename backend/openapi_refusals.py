"""`/docs` lists the refusals every write can get, from what each route declares (its token dependency, its path).

They come from middleware and dependencies shared by many routes (the token gate, the security middleware, the
body limit, leases), so no route states them itself; without this the OpenAPI document showed a worker endpoint
answering 200 or 422 only, though a missing lease is a 409 and a missing token a 401.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute

from backend.deps import require_api_token, require_worker_token
from backend.security import TokenRule, token_rules
from prunescope.contract.worker_api import WORKER_PREFIX

JSON_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}

WRITE_REFUSALS = {
    "403": "A write from another origin (`Origin`, or `Sec-Fetch-Site: cross-site`)",
    "413": "The body is larger than the limit (PRUNESCOPE_MAX_BODY_BYTES; worker reports and tracked batches: "
           "PRUNESCOPE_MAX_REPORT_BYTES)",
    "415": "The body is not `application/json`",
}
API_TOKEN = {"401": "No or a wrong API token (`Authorization: Bearer …`, when PRUNESCOPE_API_TOKEN is set), refused "
                    "before the body is read"}
WORKER_TOKEN = {"401": "No or a wrong worker token (`Authorization: Bearer …`), refused before the body is read"}
LEASED = {"409": "The lease (`X-Prunescope-Lease`) is missing or superseded: another attempt owns the run, or it "
                 "has ended",
          "404": "No run with this id"}


def refusals_for(rule: TokenRule) -> dict[str, str]:
    """Status code → description of what a write route can refuse beyond its own declared responses."""
    path = rule.path_format
    out: dict[str, str] = {}
    if require_worker_token not in rule.checks:
        out.update(WRITE_REFUSALS)
    else:
        out["413"] = WRITE_REFUSALS["413"]
        out.update(WORKER_TOKEN)
        if path.startswith(f"{WORKER_PREFIX}/runs/"):
            # `start` hands a lease out (an ended or taken run answers 200 with `proceed: false`): only its 404.
            out.update({"404": LEASED["404"]} if path.endswith("/start") else LEASED)
    if require_api_token in rule.checks:
        out.update(API_TOKEN)
    return out


def document_refusals(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Add each write route's refusals to `schema` (an OpenAPI document), keeping responses it declares itself.
    The routes are those the token gate reads (`token_rules`: included routers' dependencies count)."""
    for rule in token_rules(routes):
        for method in sorted(rule.methods):
            operation = schema.get("paths", {}).get(rule.path_format, {}).get(method.lower())
            if operation is None:  # not in the schema (include_in_schema=False)
                continue
            responses = operation.setdefault("responses", {})
            for code, description in refusals_for(rule).items():
                responses.setdefault(code, {"description": description, "content": JSON_DETAIL})
    return schema
