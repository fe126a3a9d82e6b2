"""integration_hub.ids: request and usage-row ids, unique without a system call each."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from integration_hub.ids import unique_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_32_hex_characters_and_never_repeat_in_a_process() -> None:
    ids = [unique_id() for _ in range(100_000)]
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_another_process_draws_other_ids() -> None:
    code = "from integration_hub.ids import unique_id; print(unique_id())"
    theirs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(theirs) == 3
    assert unique_id() not in theirs


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, unique_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    mine = unique_id()
    assert HEX32.fullmatch(child)
    assert child[:16] != mine[:16]  # a fresh random prefix
