"""The OpenAPI document: complete, valid, generated from the types that validate requests,
and kept by a live server under schemathesis (no 5xx, no answer the document does not allow)."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import pytest
import schemathesis

from service.api import requests
from service.api.app import create_app
from service.api.envelope import CODE_FIELDS
from service.api.errors import CODES, Code
from service.api.openapi import document, operations
from service.api.paths import DOCUMENT as DOCUMENT_PATH
from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import KEY, SECRET
from tests.live import API, ROOT, basic

NOT_API = {"web.index", "web.static", "docs.page", "docs.asset"}  # pages and their files


def test_every_route_is_documented_and_nothing_else(client) -> None:
    served = set()
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint in NOT_API or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert served == documented
    assert f"{API}/images/{{image_id}}/file" in document()["paths"]


def test_every_code_is_documented_with_its_http_status() -> None:
    doc = document()
    for code in Code:
        assert f"| {int(code)} | {CODES[code].message} | {CODES[code].http} |" in doc["info"]["description"]
    seen = set()
    for item in doc["paths"].values():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                for number in map(int, re.findall(r"code (\d+)", answer["description"])):
                    assert int(status) in CODES[Code(number)].http_statuses()
                    seen.add(number)
    assert seen == {int(code) for code in Code} - {0}
    assert doc["components"]["securitySchemes"]["basicAuth"] == {"type": "http", "scheme": "basic"}


def test_the_code_and_message_are_documented_under_every_name() -> None:
    doc, guide = document(), (ROOT / "docs" / "vendor-api.md").read_text()
    answers = ("Refusal", "ImageAnswer", "ImagePage", "SearchAnswer", "DeleteAnswer", "IndexAnswer")
    for code, message in CODE_FIELDS:
        for answer in answers:
            assert {code, message} <= set(doc["components"]["schemas"][answer]["properties"]), (answer, code)
        assert code in doc["info"]["description"] and message in doc["info"]["description"]
        assert f"`{code}`/`{message}`" in guide


def test_the_document_is_valid_openapi_3_1() -> None:
    loaded = schemathesis.openapi.from_dict(document())
    loaded.validate()
    assert document()["openapi"] == "3.1.0"
    assert len(list(loaded.get_all_operations())) == len(operations())


@pytest.mark.parametrize("name", ["Search", "AddImage", "MetadataUpdate", "DeleteImages", "EditMetadata"])
def test_the_document_holds_the_schemas_that_validate_requests(name: str) -> None:
    model = getattr(requests, name)
    generated = requests.adapter(model).json_schema(ref_template="#/components/schemas/{model}")
    generated.pop("$defs", None)
    documented = copy.deepcopy(document()["components"]["schemas"][model.__name__])
    assert documented == generated


def test_the_document_states_the_configured_limits(settings: Settings) -> None:
    configured = replace(settings, limits=replace(settings.limits, max_top_k=50, max_ids=3))
    with build_services(configured) as services:
        client = create_app(configured, services).test_client()
        schemas_ = client.get(DOCUMENT_PATH).get_json()["components"]["schemas"]
        assert schemas_["Search"]["properties"]["top_k"]["maximum"] == 50
        assert schemas_["DeleteImages"]["properties"]["ids"]["maxItems"] == 3
        services.keys.create(KEY, SECRET)
        refused = client.delete(API + "/images", json={"ids": [1, 2, 3, 4]}, headers=basic()).get_json()
        assert refused["status_code"] == 7 and "at most 3" in refused["message"], refused
        refused = client.post(API + "/search", json={"image": {}, "top_k": 51}, headers=basic()).get_json()
        assert refused["status_code"] == 7 and "50" in refused["message"], refused


@pytest.mark.parametrize(
    "path, body, code, where",
    [
        ("/search", {"image": {"base64": 5}}, 7, "image.base64"),
        ("/search", {"image": {"base64": "aGVsbG8="}, "top_k": 0}, 7, "top_k"),
        ("/search", {"image": {"base64": "aGVsbG8="}, "face": "every"}, 7, "face"),
        ("/search", {"image": {"base64": "aGVsbG8="}, "min_det_score": 2}, 7, "min_det_score"),
        ("/images", {"image": {"base64": "aGVsbG8=", "metadata": {"_id": 1}}}, 7, "image.metadata"),
        ("/images", {"image": {"base64": "aGVsbG8="}, "metadata": [1]}, 7, "metadata"),
        ("/images", {"format_type": 12, "image": {"base64": "aGVsbG8="}}, 6, None),  # format_type: code 6, not 7
        ("/images", {"metadata": {}}, 1, None),  # no image: code 1, not 7
        ("/images", {"image": {"file": "aGVsbG8="}}, 6, None),  # a file upload must be multipart
    ],
)
def test_schema_refusals_are_code_7_and_name_the_field(client, path: str, body: dict, code: int, where: str) -> None:
    answer = client.post(API + path, json=body, headers=basic())
    assert answer.status_code == 400 and answer.get_json()["status_code"] == code, answer.get_json()
    if where is not None:
        assert f": {where}: " in answer.get_json()["message"]


def test_query_and_update_bodies_are_validated(client) -> None:
    refused = client.get(API + "/images?limit=many", headers=basic()).get_json()
    assert refused["status_code"] == 7 and "limit" in refused["message"]
    refused = client.put(API + "/images/1", json={"metadata": "x"}, headers=basic()).get_json()
    assert refused["status_code"] == 7 and "metadata" in refused["message"]
    refused = client.delete(API + "/images", json={"ids": [1, 0]}, headers=basic()).get_json()
    assert refused["status_code"] == 7 and "ids.1" in refused["message"]


def test_docs_page_uses_local_swagger_ui_files_only(client) -> None:
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and not [a for a in assets if "//" in a], "no CDN: every asset is served by the service"
    for asset in assets:
        answer = client.get("/" + asset)
        assert answer.status_code == 200 and len(answer.data) > 100, asset
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").data
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get(DOCUMENT_PATH).get_json() == document()


# -- schemathesis against a live server ---------------------------------------------------------
