"""Schemathesis against the service's own OpenAPI schema: no generated request (valid or
invalid) makes a 500, and every response conforms to the schema (status code, media type,
body). Valid ``/answer`` requests carry real images (a PNG strategy for ``image/png`` parts).
The checks' settings, and why a few are relaxed, are in ``schemathesis.toml`` beside this file
(shared with ``benchmarks/load.py --fuzz``).

Schemathesis' ``from_fixture`` pytest mode does not work with pytest 9, so each operation's
strategy is drawn with hypothesis directly.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from kgmm.service import create_app

from .conftest import TEST_LIMITS

EXAMPLES = 20
CONFIG = Path(__file__).with_name("schemathesis.toml")


@st.composite
def png_images(draw: Any) -> bytes:
    from PIL import Image

    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P"]))
    colour = draw(st.integers(0, 255))
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def api_schema(toy_model: Any, toy_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    schemathesis.openapi.media_type("image/png", png_images())
    app = create_app(toy_model, toy_store, TEST_LIMITS,  # no retriever model: /rerank is 503
                     retriever=tmp_path_factory.mktemp("no-retriever") / "missing")
    config = SchemathesisConfig.from_path(CONFIG)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_no_server_errors_and_schema_conformance(api_schema: Any, mode: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call_and_validate()  # checks configured by schemathesis.toml
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    for operation in operations:
        try:
            given(case=operation.as_strategy(generation_mode=mode))(run)()
        except Unsatisfiable:  # nothing to make invalid (e.g. /healthz takes no input)
            assert mode == GenerationMode.NEGATIVE
    assert 500 not in statuses and sum(statuses.values()) >= len(operations)
    if mode == GenerationMode.POSITIVE:
        assert statuses.get(200, 0) > 0
