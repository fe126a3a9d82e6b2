"""The one error the audio package raises for audio that is not what it should be."""

from __future__ import annotations

from callers.errors import InvalidRequest


class AudioError(InvalidRequest):
    """Audio, or the format declared for it, that cannot be accepted.

    `field` names what is wrong in the request's terms (``audio``,
    ``audio_format.sample_rate_hz``, ...) and `problem` says what, so that the hub can
    answer INVALID_ARGUMENT naming the field before any provider is called. It is an
    InvalidRequest, so a caller converting audio mid-call is classified the same way.
    Messages never quote the audio itself.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
