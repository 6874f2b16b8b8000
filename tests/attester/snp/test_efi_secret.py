"""Injected secrets read in the guest, from a fake efi_secret tree in tmp_path."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.snp.efi_secret import (
    DEFAULT_ROOT,
    MAX_SECRET,
    list_injected_secrets,
    read_injected_secret,
    wipe_injected_secret,
)

FIRST = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")
SECOND = uuid.UUID("e6f5a162-d67f-4750-a67c-5d065f2a9910")
ABSENT = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    coco = tmp_path / "secrets" / "coco"
    coco.mkdir(parents=True)
    (coco / str(FIRST)).write_bytes(b"secret one")
    (coco / str(SECOND)).write_bytes(b"\x00binary\xff")
    (coco / "README").write_text("not an entry")
    (coco / str(ABSENT).upper()).write_text("not the kernel's lowercase name")
    return coco


def test_the_default_root_is_the_kernels() -> None:
    assert str(DEFAULT_ROOT) == "/sys/kernel/security/secrets/coco"


def test_list(root: Path) -> None:
    assert list_injected_secrets(root) == sorted([FIRST, SECOND])


def test_read(root: Path) -> None:
    assert read_injected_secret(FIRST, root=root) == b"secret one"
    assert read_injected_secret(SECOND, root=root) == b"\x00binary\xff"


def test_wipe(root: Path) -> None:
    wipe_injected_secret(FIRST, root=root)
    assert list_injected_secrets(root) == [SECOND]
    with pytest.raises(CollectorError, match="no injected secret"):
        wipe_injected_secret(FIRST, root=root)


def test_an_absent_entry_lists_those_present(root: Path) -> None:
    with pytest.raises(CollectorError) as caught:
        read_injected_secret(ABSENT, root=root)
    assert not isinstance(caught.value, CollectorUnavailableError)
    assert str(FIRST) in caught.value.detail and str(SECOND) in caught.value.detail


def test_an_absent_entry_in_an_empty_tree(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="present: none"):
        read_injected_secret(ABSENT, root=tmp_path)


@pytest.mark.parametrize("call", [
    list_injected_secrets,
    lambda root: read_injected_secret(FIRST, root=root),
    lambda root: wipe_injected_secret(FIRST, root=root),
], ids=["list", "read", "wipe"])
def test_no_securityfs_says_what_to_do(tmp_path: Path, call: object) -> None:
    with pytest.raises(CollectorUnavailableError) as caught:
        call(tmp_path / "absent")  # type: ignore[operator]
    assert "efi_secret" in caught.value.detail
    assert "securityfs" in caught.value.detail


def test_a_root_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(CollectorUnavailableError):
        list_injected_secrets(path)


def test_an_entry_that_is_too_large(root: Path) -> None:
    (root / str(FIRST)).write_bytes(b"x" * (MAX_SECRET + 1))
    with pytest.raises(CollectorError, match="over"):
        read_injected_secret(FIRST, root=root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_no_permission(root: Path) -> None:
    (root / str(FIRST)).chmod(0)
    with pytest.raises(CollectorError, match="permission denied"):
        read_injected_secret(FIRST, root=root)
