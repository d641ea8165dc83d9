"""A typed Python client of the Face Search API v2, and the ``face-search`` command built on it."""

from .client import (
    Deleted,
    Face,
    FaceMatches,
    FaceSearchClient,
    FaceSearchError,
    Hit,
    Image,
    ImageSummary,
    IndexState,
    Page,
    SearchOptions,
)

__all__ = [
    "Deleted",
    "Face",
    "FaceMatches",
    "FaceSearchClient",
    "FaceSearchError",
    "Hit",
    "Image",
    "ImageSummary",
    "IndexState",
    "Page",
    "SearchOptions",
]
