"""Fuzzed HTTP input: random paths, queries, JSON, headers and huge bodies never make a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter

from nativekit import Header, Service, Settings
from tests.fuzz.support import BOUNDED, Host, assert_problem, served, slash_redirect

LIMIT = 4096
INT = TypeAdapter(int)


class Line(BaseModel):
    sku: str = Field(min_length=1, max_length=20)
    quantity: int = Field(ge=1, le=100)


class Order(BaseModel):
    customer: str
    lines: list[Line] = Field(min_length=1)
    note: str | None = None


def make_service() -> Service:
    svc = Service("fuzzed", settings=Settings(_env_file=None, http={"max_body_bytes": LIMIT}))

    @svc.get("/orders/{order_id}")
    async def get_order(
        order_id: int,
        limit: Annotated[int, Field(ge=1, le=50)] = 10,
        status: Annotated[str, Field(pattern="^(open|closed)$")] = "open",
        tag: list[str] | None = None,
    ) -> dict[str, Any]:
        return {"id": order_id, "limit": limit, "status": status, "tags": tag}

    @svc.post("/orders", status_code=201)
    async def place_order(
        order: Order,
        key: Annotated[str, Header("Idempotency-Key")],
        priority: Annotated[int, Header("X-Priority")] = 0,
    ) -> dict[str, Any]:
        return {"customer": order.customer, "key": key, "priority": priority}

    return svc


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[Host, httpx.AsyncClient]]:
    with served(make_service()) as pair:
        yield pair


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
#: Bodies near the shape of an Order, with wrong types, missing and extra fields.
order_like = st.fixed_dictionaries(
    {},
    optional={
        "customer": json_values,
        "lines": st.lists(
            st.fixed_dictionaries(
                {}, optional={"sku": json_values, "quantity": json_values | st.integers()}
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "note": json_values,
    },
)
#: Orders that validate, so the success path is fuzzed too (odd text, boundary numbers).
valid_orders = st.fixed_dictionaries(
    {
        "customer": st.text(),
        "lines": st.lists(
            st.fixed_dictionaries(
                {"sku": st.text(min_size=1, max_size=20), "quantity": st.integers(1, 100)}
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"note": st.none() | st.text()},
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(lambda text: text.encode("latin-1"))  # what a server may receive: any obs-text byte


@BOUNDED
@given(
    segment=st.integers().map(str) | st.text(min_size=1, max_size=30),
    query=st.lists(
        st.tuples(st.sampled_from(["limit", "status", "tag", "other", "order_id"]), st.text()),
        max_size=5,
    ),
)
def test_random_path_and_query_answer_a_problem_never_a_500(
    app: tuple[Host, httpx.AsyncClient], segment: str, query: list[tuple[str, str]]
) -> None:
    """Any path segment and query string: 200, or a 4xx problem+json."""
    host, client = app
    url = "/orders/" + quote(segment, safe="")
    response = host.run(lambda: client.get(url, params=query))
    event(f"status: {response.status_code}")
    if slash_redirect(response, segment):
        return
    assert_problem(response, 200)
    if response.status_code == 200:
        # converted as pydantic's lax mode converts a string ("0.0" and " 7 " are ints)
        assert response.json()["id"] == INT.validate_python(segment, strict=False)


@BOUNDED
@given(
    body=valid_orders | order_like | json_values,
    key=st.none() | header_values,
    priority=st.none() | st.integers().map(lambda n: str(n).encode()) | header_values,
)
def test_random_json_bodies_and_headers_answer_a_problem_never_a_500(
    app: tuple[Host, httpx.AsyncClient], body: Any, key: bytes | None, priority: bytes | None
) -> None:
    """Random JSON (near the model or not) and odd header values: 201, or a 4xx problem."""
    host, client = app
    headers: dict[str, bytes] = {} if priority is None else {"X-Priority": priority}
    if key is not None:
        headers["Idempotency-Key"] = key
    content = json.dumps(body).encode()
    response = host.run(
        lambda: client.post(
            "/orders",
            content=content,
            headers={**headers, "Content-Type": b"application/json"},
        )
    )
    assert_problem(response, 201)
    event(f"status: {response.status_code}")


@BOUNDED
@given(
    raw=st.binary(max_size=256),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=latin-1", "", "*/*"]
    ),
)
def test_random_bytes_as_a_body_answer_a_problem_never_a_500(
    app: tuple[Host, httpx.AsyncClient], raw: bytes, content_type: str
) -> None:
    """Undecodable, truncated or non-JSON bodies under any content type: a 4xx problem."""
    host, client = app
    headers = {"Idempotency-Key": "k", "Content-Type": content_type}
    response = host.run(lambda: client.post("/orders", content=raw, headers=headers))
    assert_problem(response, 201)
    event(f"status: {response.status_code}")


@BOUNDED
@given(size=st.integers(min_value=LIMIT + 1, max_value=LIMIT * 64), chunked=st.booleans())
def test_bodies_over_the_limit_answer_413_problem(
    app: tuple[Host, httpx.AsyncClient], size: int, chunked: bool
) -> None:
    """A body larger than the limit, declared or streamed, is refused with a 413 problem."""
    host, client = app
    payload = json.dumps({"customer": "c" * size, "lines": [{"sku": "a", "quantity": 1}]})

    async def stream() -> Any:
        data = payload.encode()
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]

    content: Any = stream() if chunked else payload.encode()
    headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
    response = host.run(lambda: client.post("/orders", content=content, headers=headers))
    assert response.status_code == 413, response.text
    assert_problem(response)
    event(f"status: {response.status_code}")


@BOUNDED
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.text(max_size=40),
    name=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
        min_size=1,
        max_size=20,
    ),
    value=header_values,
)
def test_any_method_path_and_header_answer_a_problem_never_a_500(
    app: tuple[Host, httpx.AsyncClient], method: str, path: str, name: str, value: bytes
) -> None:
    """Unknown routes, wrong methods and odd header names or values: never a 5xx."""
    host, client = app
    url = "/" + quote(path, safe="/")
    response = host.run(lambda: client.request(method, url, headers={name: value}))
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400 and method != "HEAD":
        assert_problem(response)
