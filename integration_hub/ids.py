"""Cheap unique ids for request ids and usage rows.

32 hex characters, like uuid4().hex: a random 64-bit prefix drawn once per process
and a 64-bit counter. Unique across processes and restarts (the prefix is random),
at a fraction of the cost of os.urandom per id (a system call on every request; it
showed in profiles). These ids name things; they are not secrets and not meant to be
unguessable.
"""

from __future__ import annotations

import itertools
import os

_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _reseed() -> None:
    # A forked child must not repeat its parent's ids (the hub spawns its workers, but a
    # library may fork).
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed)


def unique_id() -> str:
    return f"{_prefix}{next(_counter):016x}"
