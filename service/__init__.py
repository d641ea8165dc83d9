"""The face search service in two layers: ``core`` (the use cases) and ``api`` (HTTP over them)."""
