"""schemathesis against the served OpenAPI document: no generated request gets a 5xx, and every
response matches the schema it documents."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from icdcoder.api.app import create_app
from icdcoder.api.coding import InProcessCoding
from icdcoder.api.keys import create_key, key_ring
from icdcoder.shared.settings import ApiConfig, Settings, StoreConfig
from icdcoder.shared.store.migrate import open_store
from tests.integration.test_api import FakeCoder

_folder = Path(tempfile.mkdtemp(prefix="icdcoder-fuzz-"))
_settings = Settings().with_section(
    store=StoreConfig(url=f"sqlite:///{_folder / 'store.db'}"),
    api=ApiConfig(max_wait_s=1),
)
_store = open_store(_settings.store)
KEY = create_key(_store, "fuzz")
app = create_app(
    _settings,
    store=_store,
    coding=InProcessCoding(_store, FakeCoder),
    keys=key_ring("", _store),
    pack="fuzz-pack-0123456789ab",
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case) -> None:
    for headers in ({"Authorization": f"Bearer {KEY}"}, {}):
        response = case.call(headers=headers)
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )
