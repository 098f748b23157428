"""The API contract: the serving API, started for real (``python -m coin_assets.serving`` on uvicorn, with
the feedback tokens configured and no reload token, as the issue measured it), answers every operation
of its own OpenAPI document as the document says: schemathesis generates requests from the document
(examples, coverage cases, fuzzing; valid and invalid) and every answer goes through all of its checks
(no server error, documented status codes, content types, headers and body schemas, invalid data
refused, valid data accepted, ...). ``schemathesis.toml`` at the repository root is the configuration
both this test and the CLI read (``schemathesis run http://127.0.0.1:8000/openapi.json --checks all``):
it lets the photo uploads refuse schema-valid bytes that are not a photo with their documented 422.

Every error is one documented shape (``coin_assets.serving.errors.ErrorBody``); the static checks below
hold the document to that.
"""

from __future__ import annotations

import base64

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    ROOT,
    USER_TOKEN,
    running_api,
    serving_registry_fixture,
)

NAME = "coin_api_contract"
ERROR_REF = "#/components/schemas/ErrorBody"
# Fuzzed cases per operation, on top of the documented examples and the coverage cases (some 500
# requests in all, ~10 s on 2 busy cores once the API is up): enough for the faults this test is for
# (an undocumented status or error shape shows up in the first few cases of an operation).
MAX_EXAMPLES = 25


@pytest.fixture(scope="module", autouse=True)
def subnormal_floats():
    """Training (``ml.train.flush_denormals``) sets this process's CPU to flush subnormal floats to zero;
    hypothesis then refuses to draw floats. A test that trained may have run earlier in this process."""
    import torch

    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def api(serving_registry, tmp_path_factory) -> str:
    """The base URL of the API, running in its own process on a copy of a registered version."""
    (version,) = serving_registry.model_copy(NAME, serving_registry.base[:1])
    serving_registry.promote(version, NAME)
    env = {"MLFLOW_TRACKING_URI": serving_registry.uri, "COIN_ASSETS_MODEL_NAME": NAME,
           "COIN_ASSETS_SERVING_POLL_SECONDS": "0", "COIN_ASSETS_MAX_PHOTO_BYTES": "300000",
           "COIN_ASSETS_API_TOKENS": f"alice:user:{USER_TOKEN}", "COIN_ASSETS_RELOAD_TOKEN": None}
    with running_api(tmp_path_factory.mktemp("contract_data"), env) as base:
        yield base


@pytest.fixture(scope="module")
def contract(api):
    """The running API's own document, with the repository's schemathesis configuration."""
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    return schemathesis.openapi.from_url(f"{api}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("contract")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32's fixture-loaded schemas read ``request.node._nodeid``, which pytest 9.2 no
    longer has (its node ids moved to ``_id``): give it the id it reads (it only labels the subtests)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_answers_as_documented(case):
    # all of schemathesis' checks (schemathesis.toml turns none off: it only lets the photo uploads answer
    # schema-valid bytes that are not a photo with their documented 422), with a feedback token
    case.call_and_validate(headers={"Authorization": f"Bearer {USER_TOKEN}"}, timeout=30)


def test_errors_have_one_documented_shape(api):
    """Every error status of every operation is documented, with ErrorBody; FastAPI's own validation
    error model is nowhere (its errors are answered as ErrorBody too). /health's 503 is the health report."""
    doc = httpx.get(f"{api}/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert set(doc["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "detail"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or (path, status) == ("/health", "503"):
                    continue
                schema_ref = response["content"]["application/json"]["schema"].get("$ref")
                assert schema_ref == ERROR_REF, (method, path, status)
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in operation["responses"], (method, path)
    example = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    for side in ("front", "back"):
        assert base64.b64decode(example[side], validate=True)[:2] == b"\xff\xd8"  # a JPEG


def test_reload_without_a_configured_token_is_refused_not_a_server_error(api):
    r = httpx.post(f"{api}/admin/reload", headers={"X-Reload-Token": "anything-at-all"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "reload_disabled", r.text
