"""MRTD from TDVF images (veritee.tee.dcap.measure).

No TDVF build is available here, and the research note gives no MRTD vector that can be
reproduced without the image it came from (its MRTDs are of quotes whose firmware is not in
the corpus). So the images are built in this file from the metadata layout (OVMF's GUIDed table
footer, the TDX metadata offset entry, the TDVF descriptor and its sections), and the expected
MRTD comes from a straightforward implementation here that parses the image itself and follows
note §3.1 line by line. Set ``VERITEE_TDVF`` to a real OVMF.fd with TDX metadata to compare the
two on it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError
from veritee.tee.dcap import measure as m

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
METADATA_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
OTHER_GUID = uuid.UUID("12345678-1234-5678-9abc-def012345678")
FOUR_GIB = 1 << 32
IMAGE_SIZE = 0x60000
CFV_SIZE = 0x10000


@dataclass(frozen=True)
class Sec:
    data_offset: int
    raw_data_size: int
    memory_address: int
    memory_data_size: int
    type: int
    attributes: int

    def pack(self) -> bytes:
        return struct.pack("<IIQQII", self.data_offset, self.raw_data_size,
                           self.memory_address, self.memory_data_size, self.type,
                           self.attributes)


BFV = Sec(CFV_SIZE, IMAGE_SIZE - CFV_SIZE, FOUR_GIB - (IMAGE_SIZE - CFV_SIZE),
          IMAGE_SIZE - CFV_SIZE, 0, 1)
CFV = Sec(0, CFV_SIZE, FOUR_GIB - IMAGE_SIZE, CFV_SIZE, 1, 0)
STOCK = (BFV, CFV,
         Sec(0, 0, 0x811000, 0x10000, 3, 0),   # TEMP_MEM
         Sec(0, 0, 0x80E000, 0x2000, 3, 0),
         Sec(0, 0, 0x809000, 0x2000, 2, 0),    # TD_HOB
         Sec(0, 0, 0x800000, 0x6000, 3, 0))


def build(sections: tuple[Sec, ...] = STOCK, *, size: int = IMAGE_SIZE,
          descriptor_at: int = IMAGE_SIZE - 0x1000, version: int = 1,
          length: int | None = None, signature: bytes = b"TDVF",
          distance: int | None = None, footer: bytes = FOOTER_GUID.bytes_le,
          entries: bytes | None = None, table_length: int | None = None) -> bytes:
    """A TDVF image laid out as OVMF's: CFV then BFV; in the BFV's last bytes the TDVF
    descriptor, then the GUIDed table (another entry, the metadata offset entry, the footer),
    then 32 bytes of reset vector."""
    image = bytearray(hashlib.shake_256(b"tdvf image").digest(size))
    descriptor = signature + struct.pack(
        "<III", 16 + 32 * len(sections) if length is None else length, version, len(sections))
    descriptor += b"".join(s.pack() for s in sections)
    room = min(len(descriptor), size - descriptor_at)
    image[descriptor_at:descriptor_at + room] = descriptor[:room]
    if entries is None:
        offset_entry = struct.pack("<I", size - descriptor_at if distance is None else distance)
        entries = (b"\x01\x02\x03\x04" + struct.pack("<H", 22) + OTHER_GUID.bytes_le
                   + offset_entry + struct.pack("<H", 22) + METADATA_GUID.bytes_le)
    table = entries + struct.pack("<H", len(entries) + 18 if table_length is None
                                  else table_length) + footer
    image[size - 32 - len(table):size - 32] = table
    return bytes(image)


# --- an independent implementation (note §3.1) -------------------------------------------------


def reference_mrtd(image: bytes, two_pass: bool) -> bytes:
    end = len(image) - 32
    assert image[end - 16:end] == FOOTER_GUID.bytes_le
    (total,) = struct.unpack("<H", image[end - 18:end - 16])
    table, pos, distance = image[end - total:end - 18], total - 18, None
    while pos > 0:
        (entry_len,) = struct.unpack("<H", table[pos - 18:pos - 16])
        if table[pos - 16:pos] == METADATA_GUID.bytes_le:
            (distance,) = struct.unpack("<I", table[pos - entry_len:pos - entry_len + 4])
        pos -= entry_len
    assert distance is not None
    start = len(image) - distance
    assert image[start:start + 4] == b"TDVF"
    (count,) = struct.unpack("<I", image[start + 12:start + 16])
    h = hashlib.sha384()
    for i in range(count):
        data_offset, _, gpa, size, _, attributes = struct.unpack(
            "<IIQQII", image[start + 16 + 32 * i:start + 48 + 32 * i])
        pages = size // 4096
        adds = [] if attributes & 2 else list(range(pages))
        extends = list(range(pages)) if attributes & 1 else []
        order = ([("add", p) for p in adds] + [("extend", p) for p in extends]) if two_pass \
            else [(kind, p) for p in range(pages) for kind in ("add", "extend")
                  if p in (adds if kind == "add" else extends)]
        for kind, page in order:
            if kind == "add":
                record = bytearray(128)
                record[0:12] = b"MEM.PAGE.ADD"
                record[16:24] = (gpa + page * 4096).to_bytes(8, "little")
                h.update(record)
                continue
            for chunk in range(16):
                record = bytearray(128)
                record[0:9] = b"MR.EXTEND"
                record[16:24] = (gpa + page * 4096 + chunk * 256).to_bytes(8, "little")
                h.update(record)
                at = data_offset + page * 4096 + chunk * 256
                h.update(image[at:at + 256])
    return h.digest()


# --- MRTD ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sections", [
    STOCK,
    (BFV,),
    (replace(BFV, attributes=0), CFV),
    (CFV, BFV, Sec(0, 0, 0x1_0000_0000, 0x200000, 4, 2)),  # a PAGE.AUG section
    (replace(CFV, attributes=1), BFV),                      # two extended sections
], ids=["stock-ovmf", "bfv-only", "nothing-extended", "page-aug", "cfv-extended"])
@pytest.mark.parametrize("order", m.ORDERS)
def test_mrtd_equals_the_independent_calculation(sections: tuple[Sec, ...], order: str) -> None:
    image = build(sections)
    result = m.measure(image, order=order)
    assert result.mr_td == reference_mrtd(image, two_pass=order == "two-pass")
    assert result.order == order and len(result.sections) == len(sections)
    assert result.metadata_offset == IMAGE_SIZE - 0x1000


def test_the_page_add_order_matters_only_for_multi_page_extended_sections() -> None:
    stock = build()
    assert m.measure(stock, order="single-pass").mr_td != m.measure(stock, order="two-pass").mr_td
    one_page = build((Sec(CFV_SIZE, 0x1000, FOUR_GIB - 0x1000, 0x1000, 0, 1), CFV))
    assert m.measure(one_page).mr_td == m.measure(one_page, order="two-pass").mr_td
    unextended = build((replace(BFV, attributes=0), CFV))
    assert m.measure(unextended).mr_td == m.measure(unextended, order="two-pass").mr_td


def test_page_aug_sections_add_nothing() -> None:
    """(With the descriptor in the unmeasured CFV: in the BFV, as in OVMF, it is measured.)"""
    aug = Sec(0, 0, 0x1_0000_0000, 0x200000, 4, 2)
    with_aug = build((BFV, CFV, aug), descriptor_at=0x1000)
    assert m.measure(with_aug).mr_td == m.measure(build((BFV, CFV), descriptor_at=0x1000)).mr_td
    assert m.measure(build((BFV, CFV, aug))).mr_td != m.measure(build((BFV, CFV))).mr_td


def test_the_content_of_unextended_sections_does_not_count() -> None:
    image = bytearray(build())
    image[0x100] ^= 0xFF  # inside the CFV
    assert m.measure(bytes(image)).mr_td == m.measure(build()).mr_td
    image[CFV_SIZE + 0x100] ^= 0xFF  # inside the BFV
    assert m.measure(bytes(image)).mr_td != m.measure(build()).mr_td


def test_the_json_for_veritee_measure() -> None:
    result = m.measure(build(), order="two-pass")
    out = json.loads(json.dumps(result.to_json()))
    assert out["platform"] == "tdx"
    assert out["measurement"] == out["mr_td"] == result.mr_td.hex()
    assert out["page_add_order"] == "two-pass"
    assert [s["type"] for s in out["sections"]] == ["BFV", "CFV", "TEMP_MEM", "TEMP_MEM",
                                                    "TD_HOB", "TEMP_MEM"]
    assert out["sections"][0] == {"type": "BFV", "data_offset": CFV_SIZE,
                                  "raw_data_size": IMAGE_SIZE - CFV_SIZE,
                                  "memory_address": FOUR_GIB - (IMAGE_SIZE - CFV_SIZE),
                                  "memory_data_size": IMAGE_SIZE - CFV_SIZE, "attributes": 1,
                                  "page_add": True, "mr_extend": True}


def test_an_unknown_order_is_misuse() -> None:
    with pytest.raises(MisuseError, match="page-add order 'both'; known: single-pass, two-pass"):
        m.measure(build(), order="both")


@pytest.mark.skipif(not os.environ.get("VERITEE_TDVF"), reason="VERITEE_TDVF names no image")
def test_a_real_tdvf_image_equals_the_independent_calculation() -> None:
    image = Path(os.environ["VERITEE_TDVF"]).read_bytes()
    for order in m.ORDERS:
        assert m.measure(image, order=order).mr_td == reference_mrtd(image, order == "two-pass")


# --- malformed images -------------------------------------------------------------------------

BAD: list[tuple[str, Callable[[], bytes], type[Exception], str]] = [
    ("tiny", lambda: b"\0" * 40, MalformedEvidenceError, "no GUIDed table footer"),
    ("no-footer", lambda: build(footer=OTHER_GUID.bytes_le), MalformedEvidenceError,
     "no GUIDed table footer .96b582de"),
    ("table-past-start", lambda: bytes(8) + struct.pack("<H", 0xFFFF) + FOOTER_GUID.bytes_le
     + bytes(32), MalformedEvidenceError, "GUIDed table length 65535 does not fit before 0x1a"),
    ("table-too-short", lambda: build(table_length=3), MalformedEvidenceError,
     "GUIDed table length 3"),
    ("no-metadata-entry", lambda: build(entries=b"\x01\x02\x03\x04" + struct.pack("<H", 22)
                                        + OTHER_GUID.bytes_le), MalformedEvidenceError,
     "no TDX metadata offset entry"),
    ("entry-too-long", lambda: build(entries=struct.pack("<H", 500) + OTHER_GUID.bytes_le),
     MalformedEvidenceError, "entry ending at 0x[0-9a-f]+ has length 500"),
    ("offset-entry-empty", lambda: build(entries=struct.pack("<H", 18) + METADATA_GUID.bytes_le),
     MalformedEvidenceError, "metadata offset entry holds 0 bytes"),
    ("offset-outside", lambda: build(distance=IMAGE_SIZE + 1), MalformedEvidenceError,
     "metadata offset 0x60001 does not point inside"),
    ("signature", lambda: build(signature=b"TDVX"), MalformedEvidenceError,
     "has signature b'TDVX'"),
    ("version", lambda: build(version=2), UnsupportedVersionError,
     "descriptor version is 2"),
    ("length", lambda: build(length=100), MalformedEvidenceError,
     "6 sections and length 100 do not agree .expected 208"),
    ("no-sections", lambda: build(()), MalformedEvidenceError, "has no sections"),
    ("descriptor-past-end", lambda: build((CFV,) * 200), MalformedEvidenceError,
     "its 6416 bytes run past the 0x60000-byte image"),
    ("type", lambda: build((replace(BFV, type=9),)), MalformedEvidenceError,
     r"section 0 \(9\): type 9 is unknown"),
    ("attributes", lambda: build((replace(BFV, attributes=5),)), MalformedEvidenceError,
     "attributes 0x5 set reserved bits"),
    ("unaligned", lambda: build((BFV, replace(CFV, memory_address=FOUR_GIB - IMAGE_SIZE + 8))),
     MalformedEvidenceError, r"section 1 \(CFV\): memory_address 0x[0-9a-f]+ is not page"),
    ("size-not-pages", lambda: build((replace(BFV, memory_data_size=0x1234),)),
     MalformedEvidenceError, "memory_data_size 0x1234 is not a positive number of pages"),
    ("size-zero", lambda: build((Sec(0, 0, 0x800000, 0, 3, 0),)), MalformedEvidenceError,
     "memory_data_size 0x0"),
    ("past-2-64", lambda: build((Sec(0, 0, (1 << 64) - 0x1000, 0x2000, 3, 0),)),
     MalformedEvidenceError, "runs past 2"),
    ("raw-over-memory", lambda: build((replace(CFV, raw_data_size=CFV_SIZE + 1),)),
     MalformedEvidenceError, "raw_data_size 0x10001 is over memory_data_size 0x10000"),
    ("raw-past-image", lambda: build((replace(BFV, data_offset=0x20000),)),
     MalformedEvidenceError, "runs past the 0x60000-byte image .offsets count from the start"),
    ("bfv-without-data", lambda: build((replace(BFV, raw_data_size=0, attributes=0),)),
     MalformedEvidenceError, r"section 0 \(BFV\): has no raw data"),
    ("hob-with-data", lambda: build((Sec(0, 0x1000, 0x809000, 0x2000, 2, 0),)),
     MalformedEvidenceError, "this type takes nothing from the image"),
    ("extended-past-raw", lambda: build((replace(BFV, raw_data_size=0x1000),)),
     MalformedEvidenceError, "MR.EXTENDed beyond its raw data"),
    ("overlap", lambda: build((BFV, CFV, Sec(0, 0, 0x800000, 0x6000, 3, 0),
                               Sec(0, 0, 0x805000, 0x2000, 3, 0))), MalformedEvidenceError,
     "sections 2 and 3 overlap at GPA 0x805000"),
    ("too-many-pages", lambda: build((Sec(0, 0, 0, (m.MAX_ADDED_PAGES + 1) * 0x1000, 3, 0),)),
     MalformedEvidenceError, "over the bounds"),
    ("too-big", lambda: b"\0" * (m.MAX_IMAGE_SIZE + 1), MalformedEvidenceError,
     "TDVF image is 67108865 bytes"),
]


@pytest.mark.parametrize(("build_image", "error", "message"), [(b, e, s) for _, b, e, s in BAD],
                         ids=[n for n, *_ in BAD])
def test_a_malformed_image_is_refused_with_a_clear_error(build_image: Callable[[], bytes],
                                                         error: type[Exception],
                                                         message: str) -> None:
    with pytest.raises(error, match=message):
        m.measure(build_image())


# -- veritee measure tdx --------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stdout

    from veritee.cli.main import main as cli_main

    out = io.StringIO()
    with redirect_stdout(out):
        try:
            code = cli_main(["measure", "tdx", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return int(code or 0), out.getvalue()


def test_veritee_measure_tdx_prints_the_mrtd_in_every_form(tmp_path: Path) -> None:
    image = build()
    path = tmp_path / "OVMF.fd"
    path.write_bytes(image)
    single, double = reference_mrtd(image, False).hex(), reference_mrtd(image, True).hex()
    code, text = _cli("--tdvf", str(path), "--json")
    assert code == 0 and json.loads(text)["mr_td"] == single
    code, text = _cli("--tdvf", str(path), "--json", "--order", "both")
    assert [d["mr_td"] for d in json.loads(text)] == [single, double]
    code, text = _cli("--tdvf", str(path), "--as-reference-values", "--order", "both")
    assert json.loads(text) == {"tdx_mr_td": sorted({single, double})}


def test_veritee_measure_tdx_refuses_bad_input(tmp_path: Path) -> None:
    assert _cli("--tdvf", str(tmp_path / "absent.fd"))[0] == 2
    path = tmp_path / "garbage.fd"
    path.write_bytes(b"\x00" * 4096)
    assert _cli("--tdvf", str(path), "--json")[0] == 1
    assert _cli("--tdvf", str(path), "--order", "sideways")[0] == 2
