"""The cluster vector index: one Milvus collection per pack and dimension, the gallery as
its partition key, fed from the PostgreSQL catalog's outbox."""

from .indexes import MilvusIndexes

__all__ = ["MilvusIndexes"]
