"""The keyring: file permissions and format, rotation, retirement, key ids, and KeyringSource."""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from integration_hub.vault import (
    KeyInfo,
    Keyring,
    KeyringError,
    KeyringSource,
    SealContext,
    format_key_id,
    open_sealed,
    parse_key_id,
    seal,
)


def _mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _saved(keyring: Keyring, path: Path) -> Path:
    keyring.save(path)
    return path


def _document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with a new 0600 file (a new inode, as any real rewrite would be)."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o600)
    os.replace(temporary, path)


def _edited(path: Path, edit: Any) -> str:
    document = _document(path)
    edit(document)
    return json.dumps(document)


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    return _saved(Keyring.generate(), tmp_path / "keyring.json")


# --- generate, save, load ----------------------------------------------------------------


def test_generate_gives_one_primary_key_with_id_1() -> None:
    [info] = Keyring.generate().keys()
    assert (info.id, info.state, info.retired_at) == (1, "primary", None)
    assert info.created_at.tzinfo is not None


def test_save_writes_mode_0600(keyring_path: Path) -> None:
    assert _mode_of(keyring_path) == 0o600


def test_save_keeps_0600_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = _saved(Keyring.generate(), tmp_path / "keyring.json")
    finally:
        os.umask(previous)
    assert _mode_of(path) == 0o600


def test_save_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.generate().save(path)
    Keyring.generate().rotate().save(path)

    assert [p.name for p in tmp_path.iterdir()] == ["keyring.json"]
    assert Keyring.load(path).primary_id == 2


def test_save_into_a_missing_directory_is_a_keyring_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot save keyring"):
        Keyring.generate().save(tmp_path / "absent" / "keyring.json")


def test_load_round_trips_keys_and_material(tmp_path: Path) -> None:
    context = SealContext(tenant_id="t", credential_id="c", provider="p")
    original = Keyring.generate().rotate().rotate().retire(1)
    blob = seal(original, b"payload", context)

    loaded = Keyring.load(_saved(original, tmp_path / "keyring.json"))

    assert loaded.keys() == original.keys()
    assert loaded.primary_id == 3
    assert open_sealed(loaded, blob, context) == b"payload"


def test_load_accepts_0400(keyring_path: Path) -> None:
    keyring_path.chmod(0o400)
    assert Keyring.load(keyring_path).primary_id == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_a_mode_open_to_group_or_others(keyring_path: Path, mode: int) -> None:
    keyring_path.chmod(mode)
    with pytest.raises(KeyringError, match=f"mode 0{mode:o}") as raised:
        Keyring.load(keyring_path)
    assert "0600 or stricter" in str(raised.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        Keyring.load(tmp_path / "nowhere.json")


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyringError, match="not a regular file"):
        Keyring.load(directory)


def test_load_malformed_json_says_where(keyring_path: Path) -> None:
    _write_private(keyring_path, '{"format": 1, "keys": [')
    with pytest.raises(KeyringError, match=r"malformed JSON.*line 1") as raised:
        Keyring.load(keyring_path)
    assert str(keyring_path) in str(raised.value)


def test_load_without_a_primary(keyring_path: Path) -> None:
    _write_private(keyring_path, _edited(keyring_path, lambda d: d["keys"][0].update(state="active")))
    with pytest.raises(KeyringError, match="no primary key"):
        Keyring.load(keyring_path)


def test_load_with_two_primaries(tmp_path: Path) -> None:
    path = _saved(Keyring.generate().rotate(), tmp_path / "keyring.json")
    _write_private(path, _edited(path, lambda d: d["keys"][0].update(state="primary")))
    with pytest.raises(KeyringError, match=r"more than one primary key \(k1, k2\)"):
        Keyring.load(path)


def test_load_with_a_primary_without_material(keyring_path: Path) -> None:
    _write_private(keyring_path, _edited(keyring_path, lambda d: d["keys"][0].pop("material")))
    with pytest.raises(KeyringError, match="key k1 has no material"):
        Keyring.load(keyring_path)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_load_refuses_a_key_that_is_not_32_bytes(keyring_path: Path, size: int) -> None:
    material = base64.b64encode(os.urandom(size)).decode()
    _write_private(keyring_path, _edited(keyring_path, lambda d: d["keys"][0].update(material=material)))
    with pytest.raises(KeyringError, match=f"key k1 is {size} bytes; key-encryption keys must be 32 bytes"):
        Keyring.load(keyring_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format=2), "unsupported format 2"),
        (lambda d: d.update(keys=[]), "non-empty list"),
        (lambda d: d["keys"][0].update(id=True), "no integer id"),
        (lambda d: d["keys"][0].update(id=0), "out of range"),
        (lambda d: d["keys"][0].update(state="spare"), "state 'spare'"),
        (lambda d: d["keys"][0].update(material="not base64!"), "not valid base64"),
        (lambda d: d["keys"][0].update(created_at="yesterday"), "not an ISO 8601 timestamp"),
        (lambda d: d["keys"][0].update(created_at="2025-01-01T00:00:00"), "has no timezone"),
        (lambda d: d["keys"].append(dict(d["keys"][0], state="active")), "k1 appears more than once"),
    ],
    ids=["format", "no-keys", "bool-id", "zero-id", "state", "base64", "timestamp", "naive-time", "dup-id"],
)
def test_load_explains_malformed_content(keyring_path: Path, edit: Any, message: str) -> None:
    _write_private(keyring_path, _edited(keyring_path, edit))
    with pytest.raises(KeyringError, match=message):
        Keyring.load(keyring_path)


def test_load_errors_never_quote_key_material(keyring_path: Path) -> None:
    material = _document(keyring_path)["keys"][0]["material"]
    broken = json.dumps(_document(keyring_path))[:-2]
    _write_private(keyring_path, broken)
    with pytest.raises(KeyringError) as raised:
        Keyring.load(keyring_path)
    assert material not in str(raised.value)


# --- rotate and retire -------------------------------------------------------------------


def test_rotate_adds_max_id_plus_one_as_primary() -> None:
    infos = Keyring.generate().rotate().rotate().retire(2).rotate().keys()
    assert [(info.id, info.state) for info in infos] == [
        (1, "active"),
        (2, "retired"),
        (3, "active"),
        (4, "primary"),
    ]


def test_rotate_and_retire_leave_the_original_unchanged() -> None:
    original = Keyring.generate()
    original.rotate().retire(1)
    infos = original.keys()
    assert [(info.id, info.state) for info in infos] == [(1, "primary")]


def test_keyring_is_immutable() -> None:
    keyring = Keyring.generate()
    with pytest.raises(AttributeError, match="immutable"):
        keyring._primary_id = 5


def test_keyring_cannot_be_pickled_and_copies_are_itself() -> None:
    keyring = Keyring.generate()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyring)
    assert copy.copy(keyring) is keyring
    assert copy.deepcopy(keyring) is keyring


def test_retire_primary_is_refused() -> None:
    with pytest.raises(KeyringError, match="k1: it is the primary key"):
        Keyring.generate().retire(1)


def test_retire_unknown_and_already_retired_keys_are_refused() -> None:
    keyring = Keyring.generate().rotate().retire(1)
    with pytest.raises(KeyringError, match="k9: unknown key id"):
        keyring.retire(9)
    with pytest.raises(KeyringError, match="k1: it is already retired"):
        keyring.retire(1)


def test_retire_records_when() -> None:
    [retired, _] = Keyring.generate().rotate().retire(1).keys()
    assert isinstance(retired, KeyInfo)
    assert retired.state == "retired"
    assert retired.retired_at is not None


def test_retired_material_is_absent_from_the_saved_file(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    path = _saved(keyring, tmp_path / "before.json")
    retired_material = _document(path)["keys"][0]["material"]

    after = _saved(keyring.rotate().retire(1), tmp_path / "after.json")
    document = _document(after)
    [k1] = [key for key in document["keys"] if key["id"] == 1]

    assert k1["state"] == "retired"
    assert "material" not in k1
    assert retired_material not in after.read_text(encoding="utf-8")


def test_load_refuses_a_retired_key_that_still_has_material(tmp_path: Path) -> None:
    path = _saved(Keyring.generate().rotate(), tmp_path / "keyring.json")
    _write_private(
        path,
        _edited(path, lambda d: d["keys"][0].update(state="retired", retired_at="2025-01-01T00:00:00+00:00")),
    )
    with pytest.raises(KeyringError, match="k1 is retired but the file still holds its material"):
        Keyring.load(path)


def test_has_usable_key() -> None:
    keyring = Keyring.generate().rotate().rotate().retire(1)
    assert [keyring.has_usable_key(key_id) for key_id in (0, 1, 2, 3, 4)] == [False, False, True, True, False]


def test_repr_shows_ids_not_material(tmp_path: Path) -> None:
    keyring = Keyring.generate().rotate()
    path = _saved(keyring, tmp_path / "keyring.json")
    materials = [key["material"] for key in _document(path)["keys"]]
    _, raw_primary = keyring._sealing_key()

    text = repr(keyring) + str(keyring) + repr(keyring._lookup(1))
    assert repr(keyring) == "Keyring(primary=k2, keys=[k1:active, k2:primary])"
    assert not any(material in text for material in materials)
    assert repr(raw_primary) not in text
    assert raw_primary.hex() not in text


# --- key id text ----------------------------------------------------------------------------


def test_format_key_id() -> None:
    assert format_key_id(3) == "k3"


@pytest.mark.parametrize(("text", "key_id"), [("k3", 3), ("3", 3), ("k12", 12), ("4294967295", 2**32 - 1)])
def test_parse_key_id(text: str, key_id: int) -> None:
    assert parse_key_id(text) == key_id


@pytest.mark.parametrize("text", ["", "k", "K3", "k0", "0", "-3", "k3 ", "three", "k03", "4294967296", "٣"])
def test_parse_key_id_refuses_anything_else(text: str) -> None:
    with pytest.raises(KeyringError):
        parse_key_id(text)


# --- KeyringSource ------------------------------------------------------------------------


def test_source_first_load_failure_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        KeyringSource(tmp_path / "missing.json")


def test_source_picks_up_a_rotated_file(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=0)
    assert source.current().primary_id == 1

    Keyring.load(keyring_path).rotate().save(keyring_path)

    assert source.current().primary_id == 2
    assert source.last_error is None


def test_source_does_not_look_before_the_interval(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=3600)
    Keyring.load(keyring_path).rotate().save(keyring_path)

    assert source.current().primary_id == 1
    assert source.reload().primary_id == 2
    assert source.current().primary_id == 2


def test_source_keeps_the_last_good_keyring_when_the_file_breaks(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=0)
    good = source.current()

    _write_private(keyring_path, "{ not json")

    assert source.current() is good
    assert source.last_error is not None
    assert "malformed JSON" in source.last_error


def test_source_keeps_the_last_good_keyring_when_the_mode_opens_up(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=0)
    good = source.current()
    rotated = keyring_path.with_name("rotated.json")
    Keyring.load(keyring_path).rotate().save(rotated)
    rotated.chmod(0o644)
    os.replace(rotated, keyring_path)

    assert source.current() is good
    assert source.last_error is not None
    assert "mode 0644" in source.last_error

    # chmod alone keeps mtime, size and inode; the source still notices the fix.
    keyring_path.chmod(0o600)
    assert source.current().primary_id == 2
    assert source.last_error is None


def test_source_forced_reload_failure_keeps_the_last_good_keyring(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=3600)
    good = source.current()
    keyring_path.chmod(0o640)

    assert source.reload() is good
    assert source.last_error is not None
    assert "mode 0640" in source.last_error


def test_source_reports_a_vanished_file(keyring_path: Path) -> None:
    source = KeyringSource(keyring_path, check_interval=0)
    good = source.current()
    keyring_path.unlink()

    assert source.current() is good
    assert source.last_error is not None
    assert "cannot be checked" in source.last_error
