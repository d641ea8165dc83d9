"""The request types, by name: each validates with the configured limits (the ones in force
when it is read), fills in the configured defaults, and states the limits in its schema."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.api import requests
from service.api.errors import ApiError, Code
from service.api.requests import DeleteImages, ListQuery, MetadataUpdate, Search, adapter, limits_in_force, read
from service.core import requests as core
from service.core.config import DEFAULT_LIMITS

SMALL = replace(DEFAULT_LIMITS, max_ids=3, max_top_k=50, max_page=20, top_k=7, page=5, max_metadata_bytes=40)
PHOTO = {"image": {"base64": "aGVsbG8="}}


def refusal(model: type, data: dict, limits=SMALL) -> ApiError:
    with pytest.raises(ApiError) as refused:
        read(model, data, limits)
    return refused.value


def test_a_bound_is_the_configured_limit_with_pydantics_own_message() -> None:
    assert read(DeleteImages, {"ids": [1, 2, 3]}, SMALL) == core.DeleteImages([1, 2, 3])
    refused = refusal(DeleteImages, {"ids": [1, 2, 3, 4]})
    assert (refused.code, refused.message) == (
        Code.BAD_REQUEST,
        "Malformed request: ids: List should have at most 3 items after validation, not 4",
    )
    # a list over the limit is refused as such before its items are read
    assert "at most 3 items" in refusal(DeleteImages, {"ids": [0, 0, 0, 0]}).message
    assert read(DeleteImages, {"ids": [1, 2, 3, 4]}, DEFAULT_LIMITS).ids == [1, 2, 3, 4]
    refused = refusal(Search, {**PHOTO, "top_k": 51})
    assert refused.message == "Malformed request: top_k: Input should be less than or equal to 50"
    assert refusal(ListQuery, {"limit": "21"}).message.endswith("limit: Input should be less than or equal to 20")
    assert "metadata" in refusal(MetadataUpdate, {"metadata": {"note": "x" * 50}}).message


def test_what_a_request_leaves_out_is_the_configured_default() -> None:
    search = read(Search, PHOTO, SMALL)
    assert (search.top_k, search.face, search.threshold) == (7, "largest", None)
    assert read(Search, PHOTO, DEFAULT_LIMITS).top_k == DEFAULT_LIMITS.top_k
    assert read(ListQuery, {}, SMALL) == core.Page(0, 5)
    assert read(ListQuery, {"offset": "3", "limit": "20"}, SMALL) == core.Page(3, 20)


def test_the_schema_states_the_limits_in_force() -> None:
    with limits_in_force(SMALL):
        search = adapter(Search).json_schema()["properties"]["top_k"]
        ids = adapter(DeleteImages).json_schema()["properties"]["ids"]
    assert (search["maximum"], search["description"]) == (50, "How many images to return, best first (7; at most 50).")
    assert (ids["maxItems"], ids["description"]) == (3, "At most 3 ids.")
    assert adapter(DeleteImages).json_schema()["properties"]["ids"]["maxItems"] == DEFAULT_LIMITS.max_ids


def test_the_rules_with_their_own_codes_keep_them() -> None:
    assert refusal(Search, {"top_k": 5}).code == Code.NO_CONTENT
    assert refusal(Search, {"format_type": "zip", **PHOTO}).code == Code.BAD_FORMAT_TYPE
    assert refusal(Search, {"image": {"base64": "aGVsbG8=", "url": "http://x/"}}).code == Code.BAD_FORMAT_TYPE


def test_every_request_type_is_a_module_level_class() -> None:
    for name in ("AddImage", "AddImageUpload", "DeleteImages", "Search", "SearchUpload", "MetadataUpdate",
                 "EditMetadata", "ListQuery", "LinkQuery", "ImageInput"):  # fmt: skip
        model = getattr(requests, name)
        assert model.__name__ == name and model.__module__ == requests.__name__
