"""Every answer, success or refusal, in the ``{result, status_code, message}`` envelope."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from .errors import MESSAGES, ApiError, Code


def success(result: Any, **extra: Any) -> Response:
    return jsonify({"result": result, "status_code": int(Code.SUCCESS), "message": MESSAGES[Code.SUCCESS], **extra})


def failure(error: ApiError) -> Response:
    response = jsonify({"result": None, "status_code": int(error.code), "message": error.message})
    response.status_code = error.http_status
    response.headers.update(error.headers)
    return response
