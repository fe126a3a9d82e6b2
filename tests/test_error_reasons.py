"""Every reason the hub puts in an ErrorInfo is one of common.proto's ErrorReason values,
so that clients can switch on the enum rather than on strings they found in a response."""

from __future__ import annotations

import re

from integration_hub.v1 import common_pb2
from tests.harness import REPO

PREFIX = "ERROR_REASON_"
# HubError(grpc.StatusCode.X, "REASON", ...) and reason="REASON" keyword forms.
RAISED = re.compile(r'HubError\(\s*grpc\.StatusCode\.\w+,\s*"([A-Z_]+)"|reason\s*=\s*"([A-Z_]+)"')


def declared_reasons() -> set[str]:
    return {name.removeprefix(PREFIX) for name in common_pb2.ErrorReason.keys()}  # noqa: SIM118 - an EnumTypeWrapper, not a dict - {"UNSPECIFIED"}


def raised_reasons() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((REPO / "integration_hub").rglob("*.py")):
        if path.parent.name == "v1":
            continue  # generated code
        for match in RAISED.finditer(path.read_text()):
            found[match.group(1) or match.group(2)] = str(path.relative_to(REPO))
    return found


def test_the_scan_finds_the_hubs_reasons() -> None:
    # Guards the test itself: a regex that matched nothing would pass vacuously.
    assert {"UNKNOWN_ROUTE", "RATE_LIMITED", "CIRCUIT_OPEN", "OVERLOADED"} <= set(raised_reasons())


def test_every_raised_reason_is_declared_in_the_proto() -> None:
    undeclared = {
        reason: where for reason, where in raised_reasons().items() if reason not in declared_reasons()
    }
    assert undeclared == {}, f"add these to ErrorReason in common.proto: {undeclared}"
