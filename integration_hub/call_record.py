"""What every provider call leaves behind: one CallRecord, handed to the observers
(usage accounting, metrics) when the call ends, successful or not.

Observers run on the event loop in the request's path, so `observe` must be cheap
and must not block or raise: queue the record, bump a counter, and return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from integration_hub.ids import unique_id


@dataclass(slots=True)
class CallRecord:
    tenant_id: str
    operation: str  # "chat", "stream_chat", "embed", "rerank", "transcribe", "synthesize", ...
    model: str
    request_id: str
    started_at: datetime
    credential_id: str = ""
    credential_name: str = ""
    provider: str = ""
    # The route the caller named, if any, and the target (credential name/model) last tried.
    route: str = ""
    target: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # Speech: seconds of audio transcribed or synthesized, and characters synthesized.
    audio_seconds: float = 0.0
    characters: int = 0
    # Wall time of the whole call, and the part spent waiting on the provider.
    latency_seconds: float = 0.0
    upstream_seconds: float = 0.0
    # "OK", or the gRPC status code name the call ended with (e.g. "UNAVAILABLE").
    status: str = "OK"
    reason: str = ""
    # Names this call's usage row, so that writing a batch again (its commit reached the
    # store but the answer was lost in an outage) cannot count the call twice.
    record_id: str = field(default_factory=unique_id)


class CallObserver(Protocol):
    def observe(self, record: CallRecord) -> None: ...
