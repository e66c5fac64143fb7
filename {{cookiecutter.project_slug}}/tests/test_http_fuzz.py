"""Property: whatever body a publisher POSTs, the answer is a documented status, never a 500.

Random JSON (including values with no valid JSON form: `Infinity`, `NaN`, lone
surrogates), almost-valid bodies, random text and random bytes go to the
publish route of a real app with its broadcaster running. Each is answered
202, 400, 413 or 422 with a JSON `detail`, a 202 only when its data can be
delivered as valid JSON, and a valid publish afterwards still works.

Budget: `MAX_EXAMPLES` examples per run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import load_settings

from conftest import TokenFactory, base_service_env
from fuzz_values import json_values, strict_json

MAX_EXAMPLES = 200
DOCUMENTED = {202, 400, 413, 422}

almost_bodies = st.fixed_dictionaries(
    {},
    optional={
        "event": st.text(alphabet="abc:._-@ é", max_size=70) | json_values,
        "data": json_values,
    },
)
bodies: st.SearchStrategy[bytes] = st.one_of(
    almost_bodies.map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
    st.sampled_from([b'{"data": 1e999}', b'{"data": -1e400}', b'{"data": 1' + b"0" * 5000 + b"}"]),
)


@pytest.fixture(scope="module")
def app_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """One app (lifespan running) with the test settings, for every example."""
    env = {k.lower(): v for k, v in base_service_env(request).items()}
    with TestClient(create_app(load_settings(_env_file=None, **env))) as client:
        yield client


def deliverable(body: bytes) -> bool:
    """Whether `body` is a publish whose data has a valid JSON form."""
    try:
        value: Any = strict_json(body.decode())
    except ValueError:
        return False
    return isinstance(value, dict) and "data" in value


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_any_publish_body_gets_a_documented_answer(
    app_client: TestClient, make_token: TokenFactory, body: bytes
) -> None:
    """Never a 500: 202 only for deliverable data, else 400/413/422 with a `detail`."""
    response = app_client.post(
        "/channels/room:fuzz/events",
        content=body,
        headers={"Authorization": f"Bearer {make_token()}", "Content-Type": "application/json"},
    )
    assert response.status_code in DOCUMENTED, (body, response.text)
    if response.status_code == 202:
        assert deliverable(body), body
    else:
        assert isinstance(response.json()["detail"], str)


def test_the_fuzzed_app_still_publishes(app_client: TestClient, make_token: TokenFactory) -> None:
    """After the fuzzing a plain publish is accepted and `/healthz` answers."""
    response = app_client.post(
        "/channels/room:fuzz/events",
        json={"data": {"still": "fine"}},
        headers={"Authorization": f"Bearer {make_token()}"},
    )
    assert response.status_code == 202
    assert app_client.get("/healthz").json() == {"status": "ok"}
