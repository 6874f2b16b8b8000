"""Intel DCAP collateral — TCB Info, enclave identities, CRLs and their issuer chains —
parsed and checked. Pure: no network, no disk, no clock (the instant is ``now=``).

Sections cited are those of the research note intel-dcap.md: §2.1 (trust anchor), §2.3
(collateral objects), §2.4 steps 1–4 (collateral verification, QVL order), §2.7 (time).

**Trust.** Only the Intel SGX Root CA is pinned, by the SHA-256 of its DER
(:data:`INTEL_ROOT_SHA256`, §0.1 item 4); the TCB Signing certificate is not (it was rotated
in 2025). The root itself ships in ``intel_roots.pem`` beside this module and is used only
because its fingerprint is the pin; callers may pass other roots (``roots=``), such as the
test PKIs of :mod:`veritee.testing`. Every link is ECDSA P-256 with SHA-256 (§2.1).

**Signed JSON** (§2.3, §0.1 item 5). A PCS body is ``{"tcbInfo": {...}, "signature":
"<128 hex digits: r || s>"}`` (``enclaveIdentity`` for identities). The signature covers the
text of the inner object. It is checked over the exact substring of the body first; if that
fails, over the compact re-serialisation of the parsed object in its original key order
(``separators=(",", ":")``, ``ensure_ascii=False``: QVL's method, so that pretty-printed copies
still verify). Anything else is :class:`~veritee.errors.SignatureError`. The signature is
checked before any field is interpreted, so a tampered value is a signature error, not a
format error.

**Input forms.**

(a) PCS response bodies with their issuer-chain headers (``TCB-Info-Issuer-Chain``, in API v3
``SGX-TCB-Info-Issuer-Chain``; ``SGX-Enclave-Identity-Issuer-Chain``;
``SGX-PCK-CRL-Issuer-Chain``), URL-encoded PEM as served or decoded. The offline-directory
convention: each body in its own file (``tcb-tdx-<fmspc>.json``, ``qe-identity-tdx.json``,
``pckcrl-platform.der``, ``rootcacrl.der``) and its header beside it in
``<body file name>.issuer-chain.pem``. Files are nevertheless recognised by their content,
never by their names (CONTRACT: ``--collateral``): a chain pairs with a body through the
certificate that signed it, so any names work.

(b) One combined JSON object: dcap-qvl's ``QuoteCollateralV3`` (``pck_crl_issuer_chain``,
``root_ca_crl`` and ``pck_crl`` as hex of DER, ``tcb_info_issuer_chain``, ``tcb_info`` (the
signed text), ``tcb_info_signature`` (hex), ``qe_identity_issuer_chain``, ``qe_identity``,
``qe_identity_signature``, optional ``pck_certificate_chain``; byte fields also as JSON arrays
of integers, as serde writes them), or Intel's ``sgx_ql_qve_collateral_t`` shape, whose
``tcb_info`` and ``qe_identity`` are whole PCS bodies with the signature inside.

CRLs are read from DER, PEM, base64 or hex of DER (PCCS serves hex, §2.3).

**Errors.** Malformed collateral (bad JSON, deep nesting, lone surrogates, wrong types,
missing fields, bad hex) raises :class:`~veritee.errors.MalformedEvidenceError` naming the
field; a version outside the closed set :class:`~veritee.errors.UnsupportedVersionError`;
collateral outside its validity window :class:`~veritee.errors.ExpiredError`; a root that is
not pinned :class:`~veritee.errors.UntrustedRootError`; a broken link
:class:`~veritee.errors.ChainError`; a revoked signer :class:`~veritee.errors.RevokedError`;
collateral that is needed and absent :class:`~veritee.errors.CollateralMissingError`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.collateral import CollateralFile
from veritee.encoding import compact, is_hex_text
from veritee.errors import (
    ChainError,
    CollateralMissingError,
    EvidenceError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    RevokedError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
)
from veritee.x509 import (
    Cert,
    CertCache,
    Crl,
    check_crl,
    check_link,
    issued_by,
    parse_cert,
    require_pinned,
    signature_verifies,
    split_pem_or_der,
)

#: SHA-256 of the Intel SGX Root CA's DER (§2.1; §0.1 item 4).
INTEL_ROOT_SHA256: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

#: Real TCB Infos are about 16 KiB and PCK CRLs a few KiB; anything far larger is refused.
MAX_JSON_BYTES: Final = 1 << 20
MAX_CRL_BYTES: Final = 4 << 20
#: A PCS body nests 7 levels (body → tcbInfo → tcbLevels → level → tcb → components → svn).
MAX_JSON_DEPTH: Final = 12

TCB_INFO_VERSIONS: Final = frozenset({3})
IDENTITY_VERSIONS: Final = frozenset({2})
TCB_INFO_IDS: Final = ("SGX", "TDX")
IDENTITY_IDS: Final = ("QE", "QVE", "TD_QE")
#: QVL ``VALID_TCB_INFO_STATUSES`` (§2.3), from best to worst.
TCB_STATUSES: Final = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
                       "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                       "OutOfDateConfigurationNeeded", "Revoked")
#: QVL ``VALID_MODULE_TCB_STATUSES`` (§2.3).
MODULE_STATUSES: Final = ("UpToDate", "OutOfDate", "Revoked")

TcbId = Literal["SGX", "TDX"]
PckCa = Literal["processor", "platform"]
_TCB_SIGNING_CN: Final = "SGX TCB Signing"  # QVL checks the signer's CN by substring (§2.1)
_PCK_CA_CN: Final = {"processor": "Intel SGX PCK Processor CA",
                     "platform": "Intel SGX PCK Platform CA"}
_DATE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_WS: Final = re.compile(r"[ \t\n\r]*")
_URL_ENCODED_PEM: Final = (b"%2D%2D%2D%2D%2DBEGIN", b"-----BEGIN%20", b"%2d%2d%2d%2d%2dBEGIN")
_T = TypeVar("_T")
_R = TypeVar("_R")


# -- parsed collateral ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One entry of ``tcbInfo.tcbLevels`` (§2.3). ``status`` is checked where it is used
    (QVL: an unknown status of the matched level fails closed)."""

    sgx_components: tuple[int, ...]
    """The 16 ``sgxtcbcomponents[].svn``."""
    pce_svn: int
    tdx_components: tuple[int, ...] | None
    """The 16 ``tdxtcbcomponents[].svn`` (TDX TCB Infos only)."""
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IsvLevel:
    """One ``tcbLevels`` entry of an enclave identity or a TDX module identity (§2.3)."""

    isv_svn: int
    tcb_date: datetime
    status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TdxModule:
    """``tcbInfo.tdxModule``, or one of ``tdxModuleIdentities`` (then with ``id`` such as
    ``TDX_01`` and its own TCB levels)."""

    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    id: str = ""
    tcb_levels: tuple[IsvLevel, ...] = ()


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """TCB Info v3 (§2.3), ``id`` ``SGX`` or ``TDX``."""

    id: TcbId
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    """In the order served (matching sorts them, :func:`veritee.tee.dcap.tcb.sorted_levels`)."""
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModule, ...] = ()


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    """Enclave identity v2 (§2.3): ``QE``, ``QVE`` or ``TD_QE``."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    """The hex string read as a big-endian number, as QVL reads it (§2.4 step 16)."""
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    tcb_levels: tuple[IsvLevel, ...]
    """In the order served: QVL takes the first level whose isvsvn the QE reaches."""


# -- signed JSON ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedJson:
    """A signed member of a PCS body (or of a combined JSON), before anything is trusted."""

    member: str
    """``tcbInfo`` or ``enclaveIdentity``."""
    raw: bytes
    """The signed text exactly as served."""
    value: Mapping[str, Any]
    """Its parse, in the original key order."""
    signature: bytes
    """64 bytes, r || s."""
    source: str = ""
    """Where it came from (a file name, a JSON field), for messages."""

    def compact(self) -> bytes:
        """The compact re-serialisation in the original key order (QVL's method, §2.3)."""
        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False).encode()

    def signed_forms(self) -> tuple[bytes, bytes]:
        """The texts the signature may cover: the raw text, then its compact form (§2.3)."""
        return self.raw, self.compact()


def signed_json_from_body(body: bytes | str, member: str, *, source: str = "") -> SignedJson:
    """The signed ``member`` of a PCS response body (§2.3).

    Raises:
        MalformedEvidenceError: the body is not such JSON, or ``member`` or ``signature`` is
            missing or of the wrong type.
    """
    what = source or f"the {member} body"
    text = _text(body, what)
    return _from_members(text, _top_members(text, what), member, what)


def _from_members(text: str, members: Mapping[str, tuple[Any, int, int]], member: str,
                  what: str) -> SignedJson:
    for name in (member, "signature"):
        if name not in members:
            raise MalformedEvidenceError(f"{what} has no {name!r} member")
    value, start, end = members[member]
    if not isinstance(value, dict):
        raise MalformedEvidenceError(f"{what}: {member} is {_kind(value)}, not an object")
    signature = _signature(members["signature"][0], "signature", what)
    return SignedJson(member, text[start:end].encode("utf-8"), value, signature, what)


def signed_json_from_parts(text: bytes | str, signature: Any, member: str, *,
                           source: str = "") -> SignedJson:
    """A signed ``member`` given as its text and a separate signature (hex, or a list of byte
    values), as dcap-qvl's collateral JSON holds them.

    Raises:
        MalformedEvidenceError: the text is not a JSON object or the signature is not 64 bytes.
    """
    what = source or member
    decoded = _text(text, what)
    value = _load_json(decoded, what)
    if not isinstance(value, dict):
        raise MalformedEvidenceError(f"{what} is {_kind(value)}, not a JSON object")
    raw = decoded.strip(" \t\r\n").encode("utf-8")
    return SignedJson(member, raw, value, _signature(signature, "signature", what), what)


def _text(body: bytes | str, what: str) -> str:
    size = len(body)
    if size > MAX_JSON_BYTES:
        raise MalformedEvidenceError(f"{what} is {size} bytes, more than the limit of "
                                     f"{MAX_JSON_BYTES}")
    if isinstance(body, str):
        _encodable(body, what)
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvidenceError(f"{what} is not UTF-8 text (byte {exc.start})") from exc


def _decoder(what: str) -> json.JSONDecoder:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise MalformedEvidenceError(f"{what} repeats the key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise MalformedEvidenceError(f"{what} holds {name}, which is not JSON")

    return json.JSONDecoder(object_pairs_hook=pairs, parse_constant=constant)


def _load_json(text: str, what: str) -> Any:
    """Parse ``text`` (duplicate keys, NaN, deep nesting and lone surrogates refused)."""
    try:
        value, end = _decoder(what).raw_decode(text, _skip(text, 0))
    except RecursionError as exc:
        raise MalformedEvidenceError(f"{what} nests JSON too deeply") from exc
    except ValueError as exc:
        raise MalformedEvidenceError(f"{what} is not JSON: {exc}") from exc
    if _skip(text, end) != len(text):
        raise MalformedEvidenceError(f"{what} has text after its JSON value (at {end})")
    _check_tree(value, what)
    return value


def _top_members(text: str, what: str) -> dict[str, tuple[Any, int, int]]:
    """Each member of the top-level object: its value and where its text starts and ends."""
    decoder = _decoder(what)
    pos = _skip(text, _expect(text, _skip(text, 0), "{", what))
    members: dict[str, tuple[Any, int, int]] = {}
    try:
        while not (text.startswith("}", pos) and not members):
            key, value, start, end = _member(decoder, text, pos, what)
            if key in members:
                raise MalformedEvidenceError(f"{what} repeats the key {key!r}")
            members[key] = (value, start, end)
            pos = _skip(text, end)
            if not text.startswith(",", pos):
                break
            pos = _skip(text, pos + 1)
    except RecursionError as exc:
        raise MalformedEvidenceError(f"{what} nests JSON too deeply") from exc
    except ValueError as exc:
        raise MalformedEvidenceError(f"{what} is not JSON: {exc}") from exc
    pos = _expect(text, pos, "}", what)
    if _skip(text, pos) != len(text):
        raise MalformedEvidenceError(f"{what} has text after its JSON object (at {pos})")
    _check_tree({k: v[0] for k, v in members.items()}, what)
    return members


def _member(decoder: json.JSONDecoder, text: str, pos: int,
            what: str) -> tuple[str, Any, int, int]:
    """``"key": value`` at ``pos``: the key, the value and the span of the value's text."""
    if not text.startswith('"', pos):
        raise MalformedEvidenceError(f"{what}: a member name was expected at {pos}")
    key, pos = decoder.raw_decode(text, pos)
    start = _skip(text, _expect(text, _skip(text, pos), ":", what))
    value, end = decoder.raw_decode(text, start)
    return key, value, start, end


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _expect(text: str, pos: int, char: str, what: str) -> int:
    if not text.startswith(char, pos):
        raise MalformedEvidenceError(f"{what}: {char!r} was expected at {pos}")
    return pos + 1


def _check_tree(value: Any, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_JSON_DEPTH` and strings that are not Unicode
    (a lone surrogate escape such as ``"\\udfff"``)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _encodable(item, what)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise MalformedEvidenceError(
                    f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    _encodable(key, what)
                stack.append((child, depth + 1))


def _encodable(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvidenceError(f"{what} holds a string that is not Unicode "
                                     f"(a lone surrogate at {exc.start})") from exc


def _signature(value: Any, name: str, what: str) -> bytes:
    """64 signature bytes (r || s) from hex text or a list of byte values."""
    raw = _bytes_field(value, name, what)
    if len(raw) != 64:
        raise MalformedEvidenceError(f"{what}: {name} is {len(raw)} bytes; an ECDSA P-256 "
                                     "signature r || s is 64")
    return raw


def _bytes_field(value: Any, name: str, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise MalformedEvidenceError(f"{what}: {name} is not hex") from exc
    if isinstance(value, list) and all(type(b) is int and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise MalformedEvidenceError(f"{what}: {name} is {_kind(value)}, not hex text or a list "
                                 "of byte values")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- fields -----------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise MalformedEvidenceError(f"{where}.{name} is missing")
    return obj[name]


def _int(obj: Mapping[str, Any], name: str, where: str, maximum: int = 0xFFFFFFFF) -> int:
    value = _get(obj, name, where)
    if type(value) is not int or not 0 <= value <= maximum:
        raise MalformedEvidenceError(f"{where}.{name} is {_show(value)}; an integer from 0 "
                                     f"to {maximum} was expected")
    return value


def _str(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = _get(obj, name, where)
    if not isinstance(value, str):
        raise MalformedEvidenceError(f"{where}.{name} is {_kind(value)}, not a string")
    return value


def _hex(obj: Mapping[str, Any], name: str, where: str, size: int) -> bytes:
    text = _str(obj, name, where)
    if len(text) != 2 * size or not is_hex_text(text.encode("ascii", "replace")):
        raise MalformedEvidenceError(f"{where}.{name} is {_show(text)}; {2 * size} hex digits "
                                     f"({size} bytes) were expected")
    return bytes.fromhex(text)


def _date(obj: Mapping[str, Any], name: str, where: str) -> datetime:
    text = _str(obj, name, where)
    if not _DATE.fullmatch(text):
        raise MalformedEvidenceError(f"{where}.{name} is {_show(text)}, not an ISO 8601 "
                                     "instant such as 2025-06-19T10:56:11Z")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise MalformedEvidenceError(f"{where}.{name} is {_show(text)}: {exc}") from exc


def _objects(obj: Mapping[str, Any], name: str, where: str, *,
             count: int | None = None) -> list[tuple[Mapping[str, Any], str]]:
    """The list ``obj[name]`` of objects (non-empty; ``count`` long when given), each with
    its path for messages."""
    value = _get(obj, name, where)
    if not isinstance(value, list) or not value:
        raise MalformedEvidenceError(f"{where}.{name} is {_kind(value)}; a non-empty list "
                                     "was expected")
    if count is not None and len(value) != count:
        raise MalformedEvidenceError(f"{where}.{name} has {len(value)} entries, not {count}")
    out: list[tuple[Mapping[str, Any], str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise MalformedEvidenceError(f"{where}.{name}[{i}] is {_kind(item)}, not an object")
        out.append((item, f"{where}.{name}[{i}]"))
    return out


def _object(obj: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = _get(obj, name, where)
    if not isinstance(value, dict):
        raise MalformedEvidenceError(f"{where}.{name} is {_kind(value)}, not an object")
    return value


def _advisories(obj: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = obj.get("advisoryIDs", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise MalformedEvidenceError(f"{where}.advisoryIDs is not a list of strings")
    return tuple(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- TCB Info and enclave identities ----------------------------------------------------------


def parse_tcb_info(value: Mapping[str, Any], where: str = "tcbInfo") -> TcbInfo:
    """A :class:`TcbInfo` from the parsed ``tcbInfo`` object (§2.3).

    Raises:
        UnsupportedVersionError: ``version`` is not 3, or ``tcbType`` is not 0.
        MalformedEvidenceError: a field is missing or of the wrong type or size.
    """
    version = _int(value, "version", where)
    if version not in TCB_INFO_VERSIONS:
        raise UnsupportedVersionError(f"{where}.version is {version}; veritee reads TCB Info "
                                      "version 3 (intel-dcap.md §2.3)")
    tcb_id = _str(value, "id", where)
    if tcb_id not in TCB_INFO_IDS:
        raise MalformedEvidenceError(f"{where}.id is {_show(tcb_id)}, not SGX or TDX")
    tcb_type = _int(value, "tcbType", where)
    if tcb_type != 0:
        raise UnsupportedVersionError(f"{where}.tcbType is {tcb_type}; only 0 is known (§2.3)")
    tdx = tcb_id == "TDX"
    return TcbInfo(
        id="TDX" if tdx else "SGX",
        version=version, issue_date=_date(value, "issueDate", where),
        next_update=_date(value, "nextUpdate", where), fmspc=_hex(value, "fmspc", where, 6),
        pce_id=_hex(value, "pceId", where, 2), tcb_type=tcb_type,
        tcb_evaluation_data_number=_int(value, "tcbEvaluationDataNumber", where),
        tcb_levels=tuple(_tcb_level(item, path, tdx)
                         for item, path in _objects(value, "tcbLevels", where)),
        tdx_module=_module(_object(value, "tdxModule", where), f"{where}.tdxModule")
        if tdx else None,
        tdx_module_identities=_module_identities(value, where) if tdx else (),
    )


def _tcb_level(level: Mapping[str, Any], where: str, tdx: bool) -> TcbLevel:
    tcb = _object(level, "tcb", where)
    path = f"{where}.tcb"
    return TcbLevel(
        sgx_components=_components(tcb, "sgxtcbcomponents", path),
        pce_svn=_int(tcb, "pcesvn", path, 0xFFFF),
        tdx_components=_components(tcb, "tdxtcbcomponents", path) if tdx else None,
        tcb_date=_date(level, "tcbDate", where), status=_str(level, "tcbStatus", where),
        advisory_ids=_advisories(level, where))


def _components(tcb: Mapping[str, Any], name: str, where: str) -> tuple[int, ...]:
    return tuple(_int(item, "svn", path, 0xFF)
                 for item, path in _objects(tcb, name, where, count=16))


def _module(obj: Mapping[str, Any], where: str) -> TdxModule:
    return TdxModule(mrsigner=_hex(obj, "mrsigner", where, 48),
                     attributes=_hex(obj, "attributes", where, 8),
                     attributes_mask=_hex(obj, "attributesMask", where, 8))


def _module_identities(value: Mapping[str, Any], where: str) -> tuple[TdxModule, ...]:
    if "tdxModuleIdentities" not in value:
        return ()
    out = []
    for item, path in _objects(value, "tdxModuleIdentities", where):
        base = _module(item, path)
        out.append(TdxModule(base.mrsigner, base.attributes, base.attributes_mask,
                             id=_str(item, "id", path),
                             tcb_levels=_isv_levels(item, path, statuses=None)))
    return tuple(out)


def _isv_levels(obj: Mapping[str, Any], where: str,
                statuses: Sequence[str] | None) -> tuple[IsvLevel, ...]:
    levels = []
    for item, path in _objects(obj, "tcbLevels", where):
        status = _str(item, "tcbStatus", path)
        if statuses is not None and status not in statuses:
            raise MalformedEvidenceError(f"{path}.tcbStatus is {_show(status)}, not one of "
                                         f"{', '.join(statuses)}")
        isv_svn = _int(_object(item, "tcb", path), "isvsvn", f"{path}.tcb", 0xFFFF)
        levels.append(IsvLevel(isv_svn, _date(item, "tcbDate", path), status,
                               _advisories(item, path)))
    return tuple(levels)


def parse_enclave_identity(value: Mapping[str, Any],
                           where: str = "enclaveIdentity") -> EnclaveIdentity:
    """An :class:`EnclaveIdentity` from the parsed ``enclaveIdentity`` object (§2.3). Level
    statuses are checked here, as QVL's parser does.

    Raises:
        UnsupportedVersionError: ``version`` is not 2.
        MalformedEvidenceError: a field is missing or of the wrong type or size.
    """
    version = _int(value, "version", where)
    if version not in IDENTITY_VERSIONS:
        raise UnsupportedVersionError(f"{where}.version is {version}; veritee reads enclave "
                                      "identity version 2 (intel-dcap.md §2.3)")
    identity = _str(value, "id", where)
    if identity not in IDENTITY_IDS:
        raise MalformedEvidenceError(f"{where}.id is {_show(identity)}, not QE, QVE or TD_QE")
    return EnclaveIdentity(
        id=identity, version=version, issue_date=_date(value, "issueDate", where),
        next_update=_date(value, "nextUpdate", where),
        tcb_evaluation_data_number=_int(value, "tcbEvaluationDataNumber", where),
        miscselect=int.from_bytes(_hex(value, "miscselect", where, 4), "big"),
        miscselect_mask=int.from_bytes(_hex(value, "miscselectMask", where, 4), "big"),
        attributes=_hex(value, "attributes", where, 16),
        attributes_mask=_hex(value, "attributesMask", where, 16),
        mrsigner=_hex(value, "mrsigner", where, 32),
        isv_prod_id=_int(value, "isvprodid", where, 0xFFFF),
        tcb_levels=_isv_levels(value, where, statuses=TCB_STATUSES))


# -- trust anchors, chains, signatures --------------------------------------------------------


def intel_roots() -> tuple[Cert, ...]:
    """The pinned Intel SGX Root CA, read from ``intel_roots.pem`` (only certificates whose
    SHA-256 is :data:`INTEL_ROOT_SHA256` are kept)."""
    pem = resources.files("veritee.tee.dcap").joinpath("intel_roots.pem").read_bytes()
    certs = (parse_cert(der) for der in split_pem_or_der(pem)[0])
    return tuple(c for c in certs if c is not None and c.sha256 == INTEL_ROOT_SHA256)


def load_chain(blob: bytes | str, what: str, cache: CertCache | None = None) -> tuple[Cert, ...]:
    """The certificates of an issuer chain: PEM (as saved), URL-encoded PEM (as the PCS
    header carries it), DER or base64.

    Raises:
        MalformedEvidenceError: no certificate in it.
    """
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    if any(marker in data for marker in _URL_ENCODED_PEM):
        data = urllib.parse.unquote_to_bytes(data)
    certs = (cache or CertCache()).blob(data)[0]
    if not certs:
        raise MalformedEvidenceError(f"{what} holds no certificate (PEM, URL-encoded PEM, DER "
                                     "or base64)")
    return certs


def p256_signed(cert: Cert, issuer: Cert) -> bool:
    """Intel's profile: ecdsa-with-SHA256 by a P-256 key (§2.1)."""
    key = issuer.public_key
    try:
        algorithm = cert.cert.signature_algorithm_oid
    except ValueError:  # parsed lazily by cryptography: unreadable is not signed
        return False
    return (algorithm == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1) and issued_by(cert, issuer))


def _crl_signed(crl: Crl, issuer: Cert) -> bool:
    key = issuer.public_key
    try:
        same_issuer = crl.crl.issuer == issuer.cert.subject
    except ValueError:
        return False
    return (crl.crl.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1) and same_issuer
            and signature_verifies(crl.crl.tbs_certlist_bytes, crl.crl.signature, key,
                                   rsa_padding=None, algorithm=hashes.SHA256()))


def _anchors(roots: Sequence[Cert] | None) -> tuple[Cert, ...]:
    anchors = tuple(roots) if roots is not None else intel_roots()
    if not anchors:
        raise MisuseError("no Intel root to trust (intel_roots.pem holds no pinned root)")
    return anchors


def chain_to_root(cert: Cert, chain: Sequence[Cert], *, what: str, now: datetime,
                  roots: Sequence[Cert] | None = None, cache: CertCache | None = None) -> Cert:
    """The trusted root that issued ``cert`` (§2.4 steps 2–3): an issuer certificate in
    ``chain`` is used only when pinned (else the trusted roots of that name are); the link
    and the root's self-signature must verify (ECDSA P-256), and both certificates must be
    valid at ``now``.

    Raises:
        UntrustedRootError: the chain's issuer is not pinned, or no trusted root has its name.
        ChainError: a signature does not verify.
        ExpiredError: a certificate is not valid at ``now``.
    """
    _aware(now)
    anchors, cache = _anchors(roots), cache or CertCache()
    pins = {a.sha256: a for a in anchors}
    supplied = [c for c in chain if c.subject_cn == cert.issuer_cn and c.sha256 != cert.sha256]
    found = [pins[c.sha256] for c in supplied if c.sha256 in pins]
    if supplied and not found:
        require_pinned(supplied[0], pins, what=what, vendor="Intel")
    found = found or [a for a in anchors if a.subject_cn == cert.issuer_cn]
    if not found:
        raise UntrustedRootError(f"{cert.subject_cn} in the {what} is issued by "
                                 f"{cert.issuer_cn!r}, which is not a pinned Intel root")
    root = next((r for r in found if cache.link(cert, r, p256_signed)), found[0])
    check_link(cache, cert, root, f"the {what} ({cert.subject_cn})", p256_signed)
    check_link(cache, root, root, f"the self-signature of {root.subject_cn}", p256_signed)
    root.check_validity(now, "the Intel root")
    cert.check_validity(now, f"the certificate in the {what}")
    return root


def check_not_revoked(crl: Crl | None, cert: Cert, now: datetime, what: str) -> None:
    """RevokedError when a verified ``crl`` lists ``cert`` with a revocation date at or
    before ``now`` (no CRL: nothing to check)."""
    if crl is None:
        return
    entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial)
    if entry is not None and entry.revocation_date_utc <= now:
        raise RevokedError(f"{what} ({cert.subject_cn}, serial {cert.serial:x}) was revoked on "
                           f"{entry.revocation_date_utc.isoformat()} by the {crl.issuer_cn} CRL")


def verify_signed_json(signed: SignedJson, chain: Sequence[Cert], *, now: datetime,
                       roots: Sequence[Cert] | None = None, root_crl: Crl | None = None,
                       cache: CertCache | None = None) -> Cert:
    """Check ``signed`` under a TCB Signing certificate of ``chain`` that chains to a trusted
    root and that ``root_crl`` (verified by :func:`verify_root_crl`) does not revoke; return
    that certificate (§2.4 steps 3–4).

    Raises:
        ChainError: no TCB Signing certificate in the chain, or a link does not verify.
        UntrustedRootError, ExpiredError, RevokedError: as :func:`chain_to_root` and
            :func:`check_not_revoked`.
        SignatureError: the signature verifies over neither signed form (§2.3).
    """
    what = f"{signed.source or signed.member} issuer chain"
    signers = [c for c in chain if _TCB_SIGNING_CN in c.subject_cn]
    if not signers:
        raise ChainError(f"the {what} holds no Intel SGX TCB Signing certificate")
    trusted, failure = [], None
    for signer in signers:
        try:
            chain_to_root(signer, chain, what=what, now=now, roots=roots, cache=cache)
            check_not_revoked(root_crl, signer, now, "the TCB Signing certificate")
        except EvidenceError as exc:
            failure = failure or exc
            continue
        trusted.append(signer)
    if not trusted and failure is not None:
        raise failure
    for signer in trusted:
        if _signature_ok(signed, signer):
            return signer
    raise SignatureError(f"the signature of {signed.source or signed.member} does not verify "
                         f"under {trusted[0].subject_cn} (SHA-256 {trusted[0].sha256[:16]}…) "
                         "over the signed text or its compact form")


def raw_p256_verifies(message: bytes, raw_signature: bytes, key: Any) -> bool:
    """ECDSA P-256 / SHA-256 with a raw big-endian ``r || s`` signature, as Intel writes
    them in quotes and collateral (§1.6, §2.3)."""
    if len(raw_signature) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw_signature[:32], "big"),
                               int.from_bytes(raw_signature[32:], "big"))
    return signature_verifies(message, der, key, rsa_padding=None, algorithm=hashes.SHA256())


def _signature_ok(signed: SignedJson, signer: Cert) -> bool:
    """Over the raw text first; over the compact form only when that fails (§2.3)."""
    def verifies(text: bytes) -> bool:
        return raw_p256_verifies(text, signed.signature, signer.public_key)

    if verifies(signed.raw):
        return True
    compacted = signed.compact()
    return compacted != signed.raw and verifies(compacted)


def check_window(what: str, issued: datetime, next_update: datetime, now: datetime,
                 grace: timedelta = timedelta(0)) -> None:
    """ExpiredError unless ``issued`` <= ``now`` <= ``next_update`` + ``grace`` (§2.7)."""
    if now < issued:
        raise ExpiredError(f"{what} was issued at {issued.isoformat()}, after the verification "
                           f"time {now.isoformat()}")
    if now > next_update + grace:
        extra = f" (+ a grace period of {grace})" if grace else ""
        raise ExpiredError(f"{what} is out of date: its nextUpdate is "
                           f"{next_update.isoformat()}{extra}; verification time is "
                           f"{now.isoformat()}")


def verify_tcb_info(signed: SignedJson, chain: Sequence[Cert], *, now: datetime,
                    roots: Sequence[Cert] | None = None, root_crl: Crl | None = None,
                    cache: CertCache | None = None, grace: timedelta = timedelta(0)) -> TcbInfo:
    """A TCB Info whose signature, chain and dates hold at ``now`` (§2.4 step 3): signature
    first, then the fields, then the window (nextUpdate + ``grace``)."""
    verify_signed_json(signed, chain, now=now, roots=roots, root_crl=root_crl, cache=cache)
    info = parse_tcb_info(signed.value, signed.member)
    check_window(f"the {info.id} TCB Info for FMSPC {info.fmspc.hex()}", info.issue_date,
                 info.next_update, now, grace)
    return info


def verify_enclave_identity(signed: SignedJson, chain: Sequence[Cert], *, now: datetime,
                            roots: Sequence[Cert] | None = None, root_crl: Crl | None = None,
                            cache: CertCache | None = None,
                            grace: timedelta = timedelta(0)) -> EnclaveIdentity:
    """An enclave identity whose signature, chain and dates hold at ``now`` (§2.4 step 4)."""
    verify_signed_json(signed, chain, now=now, roots=roots, root_crl=root_crl, cache=cache)
    identity = parse_enclave_identity(signed.value, signed.member)
    check_window(f"the {identity.id} identity", identity.issue_date, identity.next_update,
                 now, grace)
    return identity


# -- CRLs -------------------------------------------------------------------------------------


def load_crl(blob: bytes | str, what: str, cache: CertCache | None = None) -> Crl:
    """One CRL from DER, PEM, base64 or hex of DER (§2.3).

    Raises:
        MalformedEvidenceError: ``blob`` holds no CRL, or more than one.
    """
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    if len(data) > MAX_CRL_BYTES:
        raise MalformedEvidenceError(f"{what} is {len(data)} bytes, more than the limit of "
                                     f"{MAX_CRL_BYTES}")
    dense = compact(data)
    if dense and is_hex_text(dense):
        data = bytes.fromhex(dense.removeprefix(b"0x").removeprefix(b"0X").decode("ascii"))
    crls = (cache or CertCache()).blob(data)[1]
    if len(crls) != 1:
        found = "no CRL" if not crls else f"{len(crls)} CRLs"
        raise MalformedEvidenceError(f"{what} holds {found}; one CRL (DER, PEM, base64 or hex "
                                     "of DER) was expected")
    _readable(crls[0], what)
    return crls[0]


def _readable(crl: Crl, what: str) -> None:
    """Read every field verification uses now: ``cryptography`` parses some lazily, and a
    field that does not parse must fail here, as malformed, not later."""
    try:
        fields = (crl.crl.issuer, crl.crl.signature_algorithm_oid, crl.crl.last_update_utc,
                  crl.crl.next_update_utc, crl.crl.signature, crl.crl.tbs_certlist_bytes)
        entries = [(e.serial_number, e.revocation_date_utc) for e in crl.crl]
    except (ValueError, Warning) as exc:  # a warning this process turns into an error too
        raise MalformedEvidenceError(f"{what} is not a well-formed CRL: {exc}") from exc
    del fields, entries


def _check_crl(crl: Crl, issuer: Cert, now: datetime, grace: timedelta) -> None:
    """Signed by ``issuer`` and current at ``now`` (nextUpdate + ``grace``)."""
    try:
        check_crl(crl, issuer, now, verifies=_crl_signed)
    except ExpiredError:
        nxt = crl.crl.next_update_utc
        if not grace or now < crl.crl.last_update_utc or nxt is None or now > nxt + grace:
            raise


def verify_root_crl(crl: Crl, *, now: datetime, roots: Sequence[Cert] | None = None,
                    grace: timedelta = timedelta(0)) -> Crl:
    """The Root CA CRL, signed by a trusted root and current at ``now`` (§2.4 step 1).

    Raises:
        UntrustedRootError: its issuer is no trusted root.
        ChainError: the root did not sign it.
        ExpiredError: not current at ``now``.
    """
    _aware(now)
    issuers = [a for a in _anchors(roots) if a.subject_cn == crl.issuer_cn]
    if not issuers:
        raise UntrustedRootError(f"the Root CA CRL is issued by {crl.issuer_cn!r}, which is "
                                 "not a pinned Intel root")
    signed = [a for a in issuers if _crl_signed(crl, a)]
    _check_crl(crl, signed[0] if signed else issuers[0], now, grace)
    return crl


def verify_pck_crl(crl: Crl, chain: Sequence[Cert], *, now: datetime,
                   roots: Sequence[Cert] | None = None, root_crl: Crl | None = None,
                   cache: CertCache | None = None, grace: timedelta = timedelta(0)) -> Crl:
    """A PCK Processor or Platform CA CRL whose issuer chains to a trusted root, is not
    revoked by ``root_crl`` and signed it; current at ``now`` (§2.4 steps 2, 7).

    Raises:
        ChainError: ``chain`` holds no certificate of the CRL's issuer, or a signature fails.
        UntrustedRootError, ExpiredError, RevokedError: as :func:`chain_to_root`.
    """
    if "CA" not in crl.issuer_cn:
        raise ChainError(f"a PCK CRL is issued by {crl.issuer_cn!r}, not by an Intel PCK CA")
    issuers = [c for c in chain if c.subject_cn == crl.issuer_cn and c.issuer_cn != c.subject_cn]
    if not issuers:
        raise ChainError(f"the PCK CRL issuer chain holds no certificate for {crl.issuer_cn}")
    ca = next((c for c in issuers if _crl_signed(crl, c)), issuers[0])
    chain_to_root(ca, chain, what="PCK CRL issuer chain", now=now, roots=roots, cache=cache)
    check_not_revoked(root_crl, ca, now, "the PCK CA certificate")
    _check_crl(crl, ca, now, grace)
    return crl


# -- input forms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawCollateral:
    """Collateral as found, nothing verified: signed documents, every certificate of every
    issuer chain, and CRLs. :func:`verify_collateral` picks and verifies what a quote needs."""

    tcb_infos: tuple[SignedJson, ...] = ()
    identities: tuple[SignedJson, ...] = ()
    certs: tuple[Cert, ...] = ()
    crls: tuple[Crl, ...] = ()
    pck_chain: tuple[Cert, ...] = ()
    """dcap-qvl's optional ``pck_certificate_chain`` (the quote's own PCK chain, unverified)."""

    def __add__(self, other: RawCollateral) -> RawCollateral:
        return RawCollateral(self.tcb_infos + other.tcb_infos,
                             self.identities + other.identities,
                             _unique(self.certs + other.certs), self.crls + other.crls,
                             self.pck_chain or other.pck_chain)


def _unique(certs: tuple[Cert, ...]) -> tuple[Cert, ...]:
    seen: dict[str, Cert] = {}
    for cert in certs:
        seen.setdefault(cert.sha256, cert)
    return tuple(seen.values())


def read_pcs_body(body: bytes | str, *, issuer_chain: bytes | str | None = None,
                  source: str = "", cache: CertCache | None = None) -> RawCollateral:
    """A PCS TCB Info or enclave identity body, with its issuer-chain header when given.

    Raises:
        MalformedEvidenceError: neither body, or a chain without certificates.
    """
    what = source or "the PCS body"
    text = _text(body, what)
    return _pcs_body(text, _top_members(text, what), issuer_chain, what, cache)


def _pcs_body(text: str, members: Mapping[str, tuple[Any, int, int]],
              issuer_chain: bytes | str | None, what: str,
              cache: CertCache | None) -> RawCollateral:
    member = next((m for m in ("tcbInfo", "enclaveIdentity") if m in members), None)
    if member is None:
        raise MalformedEvidenceError(f"{what} holds neither 'tcbInfo' nor 'enclaveIdentity'")
    signed = _from_members(text, members, member, what)
    certs = load_chain(issuer_chain, f"{what} issuer chain", cache) if issuer_chain else ()
    if member == "tcbInfo":
        return RawCollateral(tcb_infos=(signed,), certs=certs)
    return RawCollateral(identities=(signed,), certs=certs)


#: The fields of dcap-qvl's ``QuoteCollateralV3`` that hold certificates and CRLs.
_CHAIN_FIELDS: Final = ("pck_crl_issuer_chain", "tcb_info_issuer_chain",
                        "qe_identity_issuer_chain")
_CRL_FIELDS: Final = ("root_ca_crl", "pck_crl")


def read_combined_json(document: bytes | str | Mapping[str, Any], *, source: str = "",
                       cache: CertCache | None = None) -> RawCollateral:
    """dcap-qvl's ``QuoteCollateralV3`` JSON, or the ``sgx_ql_qve_collateral_t`` shape (whole
    PCS bodies in ``tcb_info`` / ``qe_identity``).

    Raises:
        MalformedEvidenceError: not such an object, or a field of the wrong type.
    """
    what = source or "the collateral JSON"
    doc = document if isinstance(document, Mapping) else _load_json(_text(document, what), what)
    if not isinstance(doc, Mapping) or "tcb_info" not in doc:
        raise MalformedEvidenceError(f"{what} is not a collateral object (no 'tcb_info')")
    cache = cache or CertCache()
    raw = RawCollateral(certs=_combined_certs(doc, what, cache),
                        crls=_combined_crls(doc, what, cache),
                        pck_chain=_optional_chain(doc, "pck_certificate_chain", what, cache))
    tcb = _combined_signed(doc, "tcb_info", "tcbInfo", what)
    identity = (_combined_signed(doc, "qe_identity", "enclaveIdentity", what)
                if doc.get("qe_identity") is not None else None)
    return raw + RawCollateral(tcb_infos=(tcb,), identities=(identity,) if identity else ())


def _combined_signed(doc: Mapping[str, Any], name: str, member: str, what: str) -> SignedJson:
    text = doc[name]
    if not isinstance(text, str):
        raise MalformedEvidenceError(f"{what}: {name} is {_kind(text)}, not JSON text")
    signature = doc.get(f"{name}_signature")
    if signature is None:  # sgx_ql_qve_collateral_t: the whole PCS body
        return signed_json_from_body(text, member, source=f"{what}: {name}")
    return signed_json_from_parts(text, signature, member, source=f"{what}: {name}")


def _combined_certs(doc: Mapping[str, Any], what: str, cache: CertCache) -> tuple[Cert, ...]:
    certs: tuple[Cert, ...] = ()
    for name in _CHAIN_FIELDS:
        certs += _optional_chain(doc, name, what, cache)
    return _unique(certs)


def _optional_chain(doc: Mapping[str, Any], name: str, what: str,
                    cache: CertCache) -> tuple[Cert, ...]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, str):
        raise MalformedEvidenceError(f"{what}: {name} is {_kind(value)}, not PEM text")
    return load_chain(value, f"{what}: {name}", cache)


def _combined_crls(doc: Mapping[str, Any], what: str, cache: CertCache) -> tuple[Crl, ...]:
    crls = []
    for name in _CRL_FIELDS:
        value = doc.get(name)
        if value is None:
            continue
        blob = value.encode("utf-8", "replace") if isinstance(value, str) else _bytes_field(
            value, name, what)
        crls.append(load_crl(blob, f"{what}: {name}", cache))
    return tuple(crls)


def read_collateral_file(file: CollateralFile, cache: CertCache | None = None) -> RawCollateral:
    """Whatever collateral one file holds, recognised by its content: a PCS body, a combined
    JSON, an issuer chain (PEM, URL-encoded PEM, DER) or a CRL (DER, PEM, hex).

    Raises:
        MalformedEvidenceError: it looks like collateral JSON but does not parse.
        MisuseError: a file the operator named holds nothing usable.
    """
    cache = cache or CertCache()
    data = file.data
    head = data.lstrip()[:1]
    if head == b"{":
        return _json_file(file, cache)
    if any(marker in data for marker in _URL_ENCODED_PEM):
        data = urllib.parse.unquote_to_bytes(data)
    dense = compact(data)
    if dense and is_hex_text(dense) and len(dense) <= 2 * MAX_CRL_BYTES:
        data = bytes.fromhex(dense.removeprefix(b"0x").removeprefix(b"0X").decode("ascii"))
    certs, crls = cache.blob(data)
    for crl in crls:
        _readable(crl, file.name)
    if not certs and not crls and file.named:
        raise MisuseError(f"{file.name} holds no Intel collateral that veritee can read (PCS "
                          "JSON, collateral JSON, certificates or a CRL)")
    return RawCollateral(certs=certs, crls=crls)


def _json_file(file: CollateralFile, cache: CertCache) -> RawCollateral:
    text = _text(file.data, file.name)
    members = _top_members(text, file.name)
    if "tcbInfo" in members or "enclaveIdentity" in members:
        return _pcs_body(text, members, None, file.name, cache)
    if "tcb_info" in members:
        return read_combined_json({k: v[0] for k, v in members.items()}, source=file.name,
                                  cache=cache)
    if file.named:
        raise MisuseError(f"{file.name} is JSON but neither a PCS body nor a collateral object")
    return RawCollateral()


def read_collateral(files: Iterable[CollateralFile],
                    cache: CertCache | None = None) -> RawCollateral:
    """All collateral of ``files``. A file found in a directory (not named by the operator)
    that holds nothing usable, or does not parse, is skipped."""
    cache = cache or CertCache()
    found = RawCollateral()
    for file in files:
        try:
            found += read_collateral_file(file, cache)
        except (MalformedEvidenceError, MisuseError):
            if file.named:
                raise
    return found


# -- the verified bundle ----------------------------------------------------------------------


@dataclass(frozen=True)
class Collateral:
    """Everything a quote's TCB evaluation needs, verified at :attr:`verified_at`."""

    tcb_info: TcbInfo
    qe_identity: EnclaveIdentity | None
    root_ca_crl: Crl | None
    """None: not supplied, so not checked (CONTRACT: the claims say so)."""
    pck_crl: Crl | None
    verified_at: datetime
    grace: timedelta = timedelta(0)

    @property
    def next_updates(self) -> dict[str, datetime]:
        """The nextUpdate of each piece present."""
        dates = {"tcb_info": self.tcb_info.next_update}
        if self.qe_identity is not None:
            dates["qe_identity"] = self.qe_identity.next_update
        for name, crl in (("root_ca_crl", self.root_ca_crl), ("pck_crl", self.pck_crl)):
            if crl is not None and crl.crl.next_update_utc is not None:
                dates[name] = crl.crl.next_update_utc
        return dates

    @property
    def collateral_expiration(self) -> datetime:
        """The earliest nextUpdate of all the collateral (QvE ``earliest_expiration_date``,
        §2.7)."""
        return min(self.next_updates.values())

    @property
    def expired(self) -> bool:
        """True when it was accepted within a grace period after
        :attr:`collateral_expiration`."""
        return self.verified_at > self.collateral_expiration

    @property
    def earliest_issue_date(self) -> datetime:
        return min(self._issue_dates())

    @property
    def latest_issue_date(self) -> datetime:
        return max(self._issue_dates())

    def _issue_dates(self) -> list[datetime]:
        dates = [self.tcb_info.issue_date]
        if self.qe_identity is not None:
            dates.append(self.qe_identity.issue_date)
        dates += [c.crl.last_update_utc for c in (self.root_ca_crl, self.pck_crl) if c]
        return dates


def verify_collateral(raw: RawCollateral, *, tcb_id: TcbId, fmspc: bytes,
                      pck_ca: PckCa | None = None, now: datetime,
                      roots: Sequence[Cert] | None = None, cache: CertCache | None = None,
                      grace: timedelta = timedelta(0),
                      require_qe_identity: bool = True) -> Collateral:
    """Pick from ``raw`` and verify what a quote needs (§2.4 steps 1–4): the Root CA CRL and
    the PCK CRL of ``pck_ca`` when supplied, the ``tcb_id`` TCB Info for ``fmspc``, and the
    ``QE`` (SGX) or ``TD_QE`` (TDX) identity. Where several candidates exist, the newest that
    verifies is used; if none does, the newest one's error is raised.

    Raises:
        CollateralMissingError: no TCB Info for ``fmspc`` (or no QE identity, if required).
        EvidenceError leaves: as :func:`verify_tcb_info` and the CRL functions.
    """
    _aware(now)
    trust = _Trust(now, _anchors(roots), None, cache or CertCache(), grace)
    trust = _Trust(now, trust.roots, _root_crl(raw, trust), trust.cache, grace)
    pck_crl = _pck_crl(raw, pck_ca, trust) if pck_ca else None
    tcb_info = _first_verified(
        _newest([s for s in raw.tcb_infos if tcb_info_for(s, tcb_id, fmspc)]),
        lambda s: verify_tcb_info(s, raw.certs, **trust.kwargs()),
        f"{tcb_id} TCB Info for FMSPC {fmspc.hex()}")
    qe_id = "TD_QE" if tcb_id == "TDX" else "QE"
    identities = _newest([s for s in raw.identities if s.value.get("id") == qe_id])
    identity = None
    if identities or require_qe_identity:
        identity = _first_verified(
            identities, lambda s: verify_enclave_identity(s, raw.certs, **trust.kwargs()),
            f"{qe_id} identity")
    return Collateral(tcb_info, identity, trust.root_crl, pck_crl, now, grace)


@dataclass(frozen=True, slots=True)
class _Trust:
    """The inputs every verification of one bundle shares."""

    now: datetime
    roots: tuple[Cert, ...]
    root_crl: Crl | None
    cache: CertCache
    grace: timedelta

    def kwargs(self) -> dict[str, Any]:
        return {"now": self.now, "roots": self.roots, "root_crl": self.root_crl,
                "cache": self.cache, "grace": self.grace}


def _root_crl(raw: RawCollateral, trust: _Trust) -> Crl | None:
    names = {a.subject_cn for a in trust.roots}
    candidates = _newest_crls([c for c in raw.crls if c.issuer_cn in names])
    if not candidates:
        return None
    return _first_verified(candidates, lambda c: verify_root_crl(
        c, now=trust.now, roots=trust.roots, grace=trust.grace), "Root CA CRL")


def _pck_crl(raw: RawCollateral, pck_ca: PckCa, trust: _Trust) -> Crl | None:
    candidates = _newest_crls([c for c in raw.crls if c.issuer_cn == _PCK_CA_CN[pck_ca]])
    if not candidates:
        return None
    return _first_verified(candidates, lambda c: verify_pck_crl(c, raw.certs, **trust.kwargs()),
                           f"PCK {pck_ca} CA CRL")


def tcb_info_for(signed: SignedJson, tcb_id: str, fmspc: bytes) -> bool:
    """Whether ``signed`` is a TCB Info of ``tcb_id`` for ``fmspc`` (not yet verified)."""
    value = signed.value
    text = value.get("fmspc")
    return value.get("id") == tcb_id and isinstance(text, str) and text.lower() == fmspc.hex()


def _newest(candidates: list[SignedJson]) -> list[SignedJson]:
    """Newest issueDate first (an unreadable date sorts last; verification reports it)."""
    def key(signed: SignedJson) -> str:
        value = signed.value.get("issueDate")
        return value if isinstance(value, str) and _DATE.fullmatch(value) else ""
    return sorted(candidates, key=key, reverse=True)


def _newest_crls(candidates: list[Crl]) -> list[Crl]:
    return sorted(candidates, key=lambda c: c.crl.last_update_utc, reverse=True)


def _first_verified(candidates: Sequence[_T], verify: Callable[[_T], _R], what: str) -> _R:
    if not candidates:
        raise CollateralMissingError(f"no {what} in the collateral supplied")
    first: EvidenceError | None = None
    for candidate in candidates:
        try:
            return verify(candidate)
        except EvidenceError as exc:
            first = first or exc
    assert first is not None
    raise first


def _aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise MisuseError("the verification time must be timezone-aware (UTC)")


__all__ = [
    "IDENTITY_IDS", "IDENTITY_VERSIONS", "INTEL_ROOT_SHA256", "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH", "MODULE_STATUSES", "TCB_INFO_IDS", "TCB_INFO_VERSIONS", "TCB_STATUSES",
    "Collateral", "EnclaveIdentity", "IsvLevel", "PckCa", "RawCollateral", "SignedJson",
    "TcbId", "TcbInfo", "TcbLevel", "TdxModule", "chain_to_root", "check_not_revoked",
    "check_window", "intel_roots", "load_chain", "load_crl", "parse_enclave_identity",
    "parse_tcb_info", "read_collateral", "read_collateral_file", "read_combined_json",
    "read_pcs_body", "signed_json_from_body", "signed_json_from_parts", "verify_collateral",
    "verify_enclave_identity", "verify_pck_crl", "verify_root_crl", "verify_signed_json",
    "verify_tcb_info",
]
