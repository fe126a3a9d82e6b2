"""Speech to text and text to speech: the one path every transport takes.

The same path as chat (integration_hub.provider_calls): credential -> ciphertext row ->
Vault.open -> the provider's caller, under the same policies, recorded as one
CallRecord each, counted in seconds of audio (transcription) and characters
(synthesis). What differs is the audio: every input is probed (decoded through,
bounded) and every output format checked before a credential is opened, so that bad
audio is INVALID_ARGUMENT naming the field, and no provider is called for it.

Live streams (StreamTranscribe, StreamSynthesizeInput) are retried and fall back along
a route only until the client's first chunk has been handed to a provider: audio or
text already sent cannot be sent again, so a later failure ends the stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import grpc

from callers import audio
from callers import types as t
from callers.audio import formats
from callers.base import CallerError, Capability
from integration_hub.call_record import CallObserver, CallRecord
from integration_hub.credentials import CredentialService
from integration_hub.dispatch import from_caller_error
from integration_hub.errors import HubError, invalid_field
from integration_hub.policy import PolicyEngine, Target
from integration_hub.policy.budget import NOTHING, Amounts
from integration_hub.policy.retry import is_retryable
from integration_hub.provider_calls import ProviderCalls, Timing
from integration_hub.rpc import CallContext

# The longest recording a unary Transcribe takes (the byte bound is the request size
# limit): providers cap synchronous transcription well below this.
MAX_AUDIO_SECONDS = 4 * 3600.0
# The longest text one Synthesize takes: above every provider's own per-request limit
# but one (OpenAI: 4,096), which answers its own clear error.
MAX_SYNTHESIS_CHARACTERS = 20_000
E = TypeVar("E")


def audio_error(exc: audio.AudioError) -> HubError:
    return invalid_field(exc.field, exc.problem)


def check_output(output: t.AudioFormat, *, stream: bool) -> None:
    """Unary output may be any written format; a stream's must be cut into chunks:
    raw samples, mp3 or ogg/opus."""
    try:
        formats.check_output_format(output)
    except audio.AudioError as exc:
        raise invalid_field(exc.field.replace("audio_format", "output_format"), exc.problem) from None
    if stream and not (
        formats.is_sample_format(output) or output.encoding in (t.AudioEncoding.MP3, t.AudioEncoding.OPUS)
    ):
        raise invalid_field(
            "output_format",
            f"{output.encoding} in {output.container} cannot be streamed; use raw, mp3 or ogg opus",
        )


def check_text(text: str, where: str = "text") -> None:
    if len(text) > MAX_SYNTHESIS_CHARACTERS:
        raise invalid_field(
            where, f"is {len(text)} characters; at most {MAX_SYNTHESIS_CHARACTERS:,} per call"
        )


def check_stream_input(audio_format: t.AudioFormat) -> None:
    try:
        if formats.is_sample_format(audio_format):
            formats.check_stream_format(audio_format, output=False)
        else:
            formats.check_input_format(audio_format)
    except audio.AudioError as exc:
        raise invalid_field(exc.field.replace("audio_format", "config.audio_format"), exc.problem) from None


class _Started:
    """Whether any of the client's input has been handed to a provider yet."""

    __slots__ = ("units", "value")

    def __init__(self) -> None:
        self.value = False
        self.units = 0  # bytes of audio, or characters of text


async def _counted(
    source: AsyncIterator[Any], started: _Started, size: Callable[[Any], int]
) -> AsyncIterator[Any]:
    async for item in source:
        started.value = True
        started.units += size(item)
        yield item


async def _final_after_start(stream: AsyncIterator[E], started: _Started) -> AsyncIterator[E]:
    """The caller's stream, whose retryable failures become final once input was sent."""
    try:
        async for event in stream:
            yield event
    except CallerError as exc:
        if started.value and is_retryable(exc):
            error = from_caller_error(exc)
            error.message += " (the live stream had started: it is not retried)"
            raise error from None
        raise
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


class SpeechService(ProviderCalls):
    """Every speech call: validated, then the shared provider-call path."""

    def __init__(
        self,
        credentials: CredentialService,
        engine: PolicyEngine,
        observers: Sequence[CallObserver] = (),
        *,
        max_audio_bytes: int,
    ) -> None:
        super().__init__(credentials, engine, observers)
        self._limits = audio.Limits(max_bytes=max_audio_bytes, max_seconds=MAX_AUDIO_SECONDS)

    def probe(self, data: bytes, declared: t.AudioFormat | t.AudioContainer) -> audio.AudioInfo:
        try:
            return audio.probe(data, declared, self._limits)
        except audio.AudioError as exc:
            raise audio_error(exc) from None

    async def transcribe(
        self,
        call: CallContext,
        credential_ref: str,
        request: t.TranscribeRequest,
        declared: t.AudioFormat | t.AudioContainer | None,
        timeout: float,
    ) -> tuple[t.TranscribeResponse, str, Timing, float | None]:
        """The transcript, the provider, the timing and the seconds of audio (None: the
        provider fetched the audio itself and did not say)."""
        seconds: float | None = None
        if declared is not None:
            info = self.probe(request.audio, declared)
            # The file's own header is authoritative: callers get what it really is.
            request.audio_format, seconds = info.audio_format, info.duration
        timing, record = Timing(started=call.started), self._start(call, "transcribe", request.model or "")
        probed = seconds or 0.0
        spend = self._spend(call, lambda: Amounts(audio_seconds=probed))
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                request.model = model or None
                return await caller.transcribe(secret, options, request, timeout=budget)

            response, _ = await self._unary(
                call,
                credential_ref,
                request.model or "",
                Capability.STT,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
                spend=spend,
            )
            timing.finished = time.monotonic()
            if seconds is None:
                seconds = response.duration
            record.audio_seconds = seconds or 0.0
            return response, record.provider, timing, seconds
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
            await self._settle(spend, record)

    async def synthesize(
        self, call: CallContext, credential_ref: str, request: t.SynthesizeRequest, timeout: float
    ) -> tuple[t.SynthesizeResponse, str, Timing, float]:
        check_output(request.output_format, stream=False)
        check_text(request.text)
        timing, record = Timing(started=call.started), self._start(call, "synthesize", request.model or "")
        spend = self._spend(call, lambda: Amounts(characters=len(request.text)))
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                request.model = model or None
                return await caller.synthesize(secret, options, request, timeout=budget)

            response, _ = await self._unary(
                call,
                credential_ref,
                request.model or "",
                Capability.TTS,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
                spend=spend,
            )
            timing.finished = time.monotonic()
            record.characters = len(request.text)
            seconds = audio.audio_seconds(response.audio, request.output_format)
            record.audio_seconds = seconds
            return response, record.provider, timing, seconds
        except audio.AudioError as exc:
            error = HubError(
                grpc.StatusCode.UNAVAILABLE,
                "PROVIDER_UNAVAILABLE",
                f"the provider's audio does not decode as {request.output_format.encoding}: {exc.problem}",
            )
            raise error from None
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
            await self._settle(spend, record)

    async def _stream(
        self,
        call: CallContext,
        credential_ref: str,
        model: str,
        operation: str,
        capability: Capability,
        timing: Timing,
        timeout: float,
        open_stream: Callable[[Any, dict[str, str], Any, str, float], AsyncIterator[Any]],
        account: Callable[[CallRecord], None],
    ) -> tuple[str, AsyncIterator[Any]]:
        """A provider stream on the shared path, recorded when it ends however it ends."""
        record = self._start(call, operation, model)
        # A live stream's size is unknown up front: nothing is reserved, it is refused only
        # when a budget is already full, and settled with what it carried when it ends.
        spend = self._spend(call, lambda: NOTHING)
        upstream_start: float | None = None

        def upstream_so_far() -> float:
            return 0.0 if upstream_start is None else time.monotonic() - upstream_start

        try:
            plan, resolved = await self._plan(call, credential_ref, model, record, model_required=False)

            async def attempt(target: Target, budget: float) -> AsyncIterator[Any]:
                nonlocal upstream_start
                caller, options, secret = await self._prepare(call, target, capability, record, resolved)
                upstream_start = time.monotonic()
                return open_stream(caller, options, secret, target.model, budget)

            stream, _ = await self._engine.run_stream(call.principal.tenant_id, plan, timeout, attempt, spend)
            timing.first_token = time.monotonic()
        except BaseException as exc:
            timing.upstream = upstream_so_far()
            account(record)
            self._finish(record, timing, exc)
            raise

        async def events() -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for event in stream:
                    yield event
                timing.finished = time.monotonic()
            except BaseException as exc:
                error = exc
                raise
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
                timing.upstream = upstream_so_far()
                account(record)
                self._finish(record, timing, error)
                await self._settle(spend, record)

        return record.provider, events()

    async def stream_synthesize(
        self,
        call: CallContext,
        credential_ref: str,
        request: t.SynthesizeRequest,
        timeout: float,
        timing: Timing,
    ) -> tuple[str, AsyncIterator[t.AudioChunk]]:
        check_output(request.output_format, stream=True)
        check_text(request.text)
        produced = _Started()

        def open_stream(caller: Any, options: dict[str, str], secret: Any, model: str, budget: float) -> Any:
            request.model = model or None
            chunks = caller.stream_synthesize(secret, options, request, timeout=budget)
            return _counted(chunks, produced, lambda chunk: len(chunk.audio))

        def account(record: CallRecord) -> None:
            record.characters = len(request.text)
            record.audio_seconds = raw_seconds(produced.units, request.output_format)

        return await self._stream(
            call,
            credential_ref,
            request.model or "",
            "stream_synthesize",
            Capability.STREAM_TTS,
            timing,
            timeout,
            open_stream,
            account,
        )

    async def stream_transcribe(
        self,
        call: CallContext,
        credential_ref: str,
        request: t.StreamTranscribeRequest,
        chunks: AsyncIterator[bytes],
        timeout: float,
        timing: Timing,
    ) -> tuple[str, AsyncIterator[t.StreamTranscribeEvent]]:
        check_stream_input(request.audio_format)
        sent = _Started()
        audio_in = _counted(chunks, sent, len)

        def open_stream(caller: Any, options: dict[str, str], secret: Any, model: str, budget: float) -> Any:
            if sent.value:
                raise HubError(
                    grpc.StatusCode.UNAVAILABLE,
                    "PROVIDER_UNAVAILABLE",
                    "the live transcription failed after its audio had started; it is not retried",
                )
            request.model = model or None
            events = caller.stream_transcribe(secret, options, request, audio_in, timeout=budget)
            return _final_after_start(events, sent)

        def account(record: CallRecord) -> None:
            record.audio_seconds = raw_seconds(sent.units, request.audio_format)

        return await self._stream(
            call,
            credential_ref,
            request.model or "",
            "stream_transcribe",
            Capability.STREAM_STT,
            timing,
            timeout,
            open_stream,
            account,
        )

    async def stream_synthesize_input(
        self,
        call: CallContext,
        credential_ref: str,
        request: t.SynthesizeRequest,
        text: AsyncIterator[t.TextInput],
        timeout: float,
        timing: Timing,
    ) -> tuple[str, AsyncIterator[t.AudioChunk]]:
        check_output(request.output_format, stream=True)
        sent = _Started()
        text_in = _counted(text, sent, lambda item: len(item) if isinstance(item, str) else 0)
        produced = _Started()

        def open_stream(caller: Any, options: dict[str, str], secret: Any, model: str, budget: float) -> Any:
            request.model = model or None
            chunks = caller.stream_synthesize_input(secret, options, request, text_in, timeout=budget)
            return _counted(_final_after_start(chunks, sent), produced, lambda chunk: len(chunk.audio))

        def account(record: CallRecord) -> None:
            record.characters = sent.units
            record.audio_seconds = raw_seconds(produced.units, request.output_format)

        return await self._stream(
            call,
            credential_ref,
            request.model or "",
            "stream_synthesize_input",
            Capability.STREAM_TTS_INPUT,
            timing,
            timeout,
            open_stream,
            account,
        )

    async def list_voices(
        self, call: CallContext, credential_ref: str, language: str | None, timeout: float
    ) -> list[t.Voice]:
        if not credential_ref:
            raise invalid_field("credential", "required: a credential id or name")
        timing, record = Timing(started=call.started), self._start(call, "list_voices", "")
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                return await caller.list_voices(secret, options, language=language, timeout=budget)

            voices, _ = await self._unary(
                call,
                credential_ref,
                "",
                Capability.VOICES,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
            )
            timing.finished = time.monotonic()
            return [v for v in voices if _speaks(v, language)]
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)


def _speaks(voice: t.Voice, language: str | None) -> bool:
    """A BCP-47 prefix match; a voice that names no language (multilingual) matches all."""
    if not language or not voice.languages:
        return True
    wanted = language.lower()
    return any(code.lower() == wanted or code.lower().startswith(wanted + "-") for code in voice.languages)


def raw_seconds(byte_count: int, audio_format: t.AudioFormat) -> float:
    """Seconds in a stream's bytes, where its format tells (raw samples); else 0."""
    if not formats.is_sample_format(audio_format) or not byte_count:
        return 0.0
    return audio.raw_seconds(byte_count, audio_format)
