"""The embedded vector index: FAISS in each process's memory, checkpointed to local files.

Index generations, checkpoint files and the rebuild child are private to this package;
the rest of the service sees ``index.vectors.VectorIndexes``.
"""

from .galleries import FaissIndexes

__all__ = ["FaissIndexes"]
