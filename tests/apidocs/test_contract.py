"""The shop's OpenAPI documents hold: schemathesis against each service over real HTTP.

Each service runs in its own uvicorn process on memory backends. For every operation,
schemathesis generates valid and invalid requests and checks each answer: no 500, a
status the document lists, its media type, body and headers as documented, invalid
input refused. NATIVEKIT_CONTRACT_EXAMPLES=500 searches longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from tests.served import serve

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("NATIVEKIT_CONTRACT_EXAMPLES", "25"))
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
    st_checks.negative_data_rejection,
]
SERVICES = ("inventory", "payments", "orders")


@contextmanager
def running(name: str, logs: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """One shop service in a uvicorn process (orders with its two peers in theirs): its
    URL and its OpenAPI document."""
    with ExitStack() as stack:
        env = {"SHOP_SEED_PRODUCTS": "3"}
        if name == "orders":
            for peer in ("inventory", "payments"):
                peer_url = stack.enter_context(
                    serve(f"examples.shop.{peer}:app", logs / f"{peer}.log", **env)
                )
                env[f"SHOP_{peer.upper()}_URL"] = peer_url
        url = stack.enter_context(serve(f"examples.shop.{name}:app", logs / f"{name}.log", **env))
        yield url, httpx.get(f"{url}/openapi.json", timeout=10).json()


@pytest.fixture(scope="module", params=SERVICES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each shop service in turn, running."""
    with running(request.param, tmp_path_factory.mktemp(f"contract-{request.param}")) as found:
        yield found


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """The payments service, running."""
    with running("payments", tmp_path_factory.mktemp("contract-payments")) as found:
        yield found


def test_the_document_is_valid_openapi(service: tuple[str, dict[str, Any]]) -> None:
    """openapi-spec-validator accepts the served document."""
    _, document = service
    validate(document)
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_matches_the_document(
    service: tuple[str, dict[str, Any]], mode: GenerationMode
) -> None:
    """Generated requests to every operation get only documented, well-formed answers."""
    url, document = service
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the document lists no operation"
    failures: list[str] = []
    exercised = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, checks=CHECKS, timeout=10)

        try:
            run()
        except Unsatisfiable:
            # only in negative mode: nothing to get wrong (no parameter, or a string
            # path segment whose one invalid value, "", cannot be sent)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
        exercised += 1
    assert failures == [], "\n\n".join(failures)
    assert exercised > 0


@pytest.mark.parametrize(
    ("token", "status"), [("tok_visa", 201), ("tok_decline", 402), ("tok_fail", 503)]
)
def test_payment_answers_match_the_document(
    payments: tuple[str, dict[str, Any]], token: str, status: int
) -> None:
    """The answers random data rarely reaches (a declined card, a provider failure) are
    documented too, bodies included (the 503 on purpose: not_a_server_error is left out)."""
    url, document = payments
    operation = schemathesis.openapi.from_dict(document).find_operation_by_label("POST /payments")
    case = operation.Case(
        body={"order_id": "o-1", "amount": 700, "token": token},
        headers={"idempotency-key": f"contract-{token}"},
        media_type="application/json",
    )
    documented = [c for c in CHECKS if c is not st_checks.not_a_server_error]
    response = case.call_and_validate(base_url=url, checks=documented, timeout=10)
    assert response.status_code == status
