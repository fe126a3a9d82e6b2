"""The pymilvus import, guarded: a missing extra names the extra to install."""

from __future__ import annotations

try:
    import pymilvus  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "chatbot.vectors needs pymilvus and milvus-lite: pip install 'integration-hub[chatbot]'"
    ) from exc

MilvusClient = pymilvus.MilvusClient
MilvusException = pymilvus.MilvusException
DataType = pymilvus.DataType
Function = pymilvus.Function
FunctionType = pymilvus.FunctionType
AnnSearchRequest = pymilvus.AnnSearchRequest
RRFRanker = pymilvus.RRFRanker
