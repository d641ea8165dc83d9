"""Every answer, success or refusal, in the ``{result, status_code, message}`` envelope.

The code and message are also sent under the names of the vendor's other documentation
(``CODE_FIELDS``), which deployed clients read instead: a client that reads a field the
answer lacks takes a refusal for a success in some languages (PHP compares null == 0).
``FACE_SEARCH_CODE_ALIASES=0`` keeps the API's own pair only. The OpenAPI schemas of the
answers (service/api/responses.py) and the HTTP server's own refusals
(service/api/server.py) are made from the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify

from .context import app
from .errors import CODES, ApiError, Code

# The names of the code and of the message: the API's own pair first, then the others.
CODE_FIELDS = (("status_code", "message"), ("errorCode", "error_message"), ("invalidCode", "invalidMessage"))


def envelope(result: Any, code: int, message: str, aliases: bool = True, **extra: Any) -> dict[str, Any]:
    """An answer's JSON object: the result, its code and message under each name, then ``extra``."""
    pairs = CODE_FIELDS if aliases else CODE_FIELDS[:1]
    named = {name: value for pair in pairs for name, value in zip(pair, (code, message), strict=True)}
    return {"result": result, **named, **extra}


def _aliases() -> bool:
    return app().settings.api.code_aliases


def success(answer: Mapping[str, Any]) -> Response:
    """A success: ``answer`` is one of service/api/responses.py's answers, its ``result`` and
    the fields beside it, which follow the code and message."""
    extra = {name: value for name, value in answer.items() if name != "result"}
    return jsonify(envelope(answer["result"], int(Code.SUCCESS), CODES[Code.SUCCESS].message, _aliases(), **extra))


def failure(error: ApiError) -> Response:
    response = jsonify(envelope(None, int(error.code), error.message, _aliases()))
    response.status_code = error.http_status
    response.headers.update(error.headers)
    return response
