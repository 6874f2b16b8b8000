"""TCB level matching and status convergence for Intel DCAP quotes, as Intel's QVL does them.

Sections are those of intel-dcap.md: §2.4 steps 9–10 (the TCB Info applies), 12 (TDX module
identity), 15–16 (QE identity), 18 (TCB level); §2.5 (matching, TEE_TCB_SVN, module
identities); §2.6 (convergence: QVL's asymmetric rules, not "take the worst"; TD relaunch);
§2.9 (dcap-qvl's all-16-bytes rule, available as an option so differential tests can pin the
divergence).

Pure functions over plain values: the caller reads the PCK certificate and the quote and
passes a :class:`PlatformTcb` and a :class:`QeReport`; collateral comes verified from
:mod:`veritee.tee.dcap.collateral`. Statuses are Intel's strings (``UpToDate``, ...,
``Revoked``) plus ``TDRelaunchAdvised``, ``TDRelaunchAdvisedConfigurationNeeded`` and
``TcbNotSupported``. A status is a verdict to report; :meth:`TcbVerdict.raise_for_status`
turns the terminal ones into errors (CONTRACT: no matching level, or Revoked, is rejected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError, RevokedError
from veritee.tee.dcap.collateral import (
    MODULE_STATUSES,
    TCB_STATUSES,
    EnclaveIdentity,
    IsvLevel,
    TcbInfo,
    TcbLevel,
    TdxModule,
)

UP_TO_DATE: Final = "UpToDate"
SW_HARDENING_NEEDED: Final = "SWHardeningNeeded"
CONFIGURATION_NEEDED: Final = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED: Final = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE: Final = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED: Final = "OutOfDateConfigurationNeeded"
REVOKED: Final = "Revoked"
TD_RELAUNCH_ADVISED: Final = "TDRelaunchAdvised"
TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED: Final = "TDRelaunchAdvisedConfigurationNeeded"
TCB_NOT_SUPPORTED: Final = "TcbNotSupported"

#: Every status :func:`evaluate_tcb` may return.
STATUSES: Final = (*TCB_STATUSES, TD_RELAUNCH_ADVISED, TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
                   TCB_NOT_SUPPORTED)
#: (the module identity, its matched level, its status) — all None without one.
ModuleMatch = tuple[TdxModule | None, IsvLevel | None, str | None]
_CONFIGURATION: Final = frozenset({CONFIGURATION_NEEDED, OUT_OF_DATE_CONFIGURATION_NEEDED,
                                   CONFIGURATION_AND_SW_HARDENING_NEEDED,
                                   TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED})


@dataclass(frozen=True, slots=True)
class PlatformTcb:
    """What matching reads from the PCK certificate (§2.2) and the quote's report body."""

    sgx_components: tuple[int, ...]
    """SGX TCB COMP01..16 SVN from the PCK certificate's SGX extension."""
    pce_svn: int
    """PCESVN from the PCK certificate (not the quote header's)."""
    fmspc: bytes
    pce_id: bytes
    tee_tcb_svn: bytes | None = None
    """TDX only: TEE_TCB_SVN (16 bytes). None for an SGX quote."""
    mr_signer_seam: bytes | None = None
    """TDX only: MRSIGNERSEAM (48 bytes)."""
    seam_attributes: bytes | None = None
    """TDX only: SEAMATTRIBUTES (8 bytes)."""
    tee_tcb_svn2: bytes | None = None
    """TD report 1.5 only (quote v5, body type 3): TEE_TCB_SVN2 (16 bytes)."""

    def __post_init__(self) -> None:
        if len(self.sgx_components) != 16 or not all(
                0 <= c <= 255 for c in self.sgx_components):
            raise MisuseError("PlatformTcb.sgx_components must be 16 values from 0 to 255")
        sizes = (("fmspc", self.fmspc, 6), ("pce_id", self.pce_id, 2),
                 ("tee_tcb_svn", self.tee_tcb_svn, 16),
                 ("mr_signer_seam", self.mr_signer_seam, 48),
                 ("seam_attributes", self.seam_attributes, 8),
                 ("tee_tcb_svn2", self.tee_tcb_svn2, 16))
        for name, value, size in sizes:
            if value is not None and len(value) != size:
                raise MisuseError(f"PlatformTcb.{name} is {len(value)} bytes, not {size}")
        if self.tdx and (self.mr_signer_seam is None or self.seam_attributes is None):
            raise MisuseError("a TDX PlatformTcb needs mr_signer_seam and seam_attributes")

    @property
    def tdx(self) -> bool:
        return self.tee_tcb_svn is not None


@dataclass(frozen=True, slots=True)
class QeReport:
    """The quoting enclave's report fields that its identity is matched against."""

    misc_select: int
    """MISCSELECT as the number the report's little-endian u32 holds."""
    attributes: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int

    def __post_init__(self) -> None:
        if len(self.attributes) != 16 or len(self.mr_signer) != 32:
            raise MisuseError("QeReport.attributes must be 16 bytes and mr_signer 32")


@dataclass(frozen=True, slots=True)
class TcbVerdict:
    """The outcome of TCB evaluation: the converged status and what it came from."""

    status: str
    advisory_ids: tuple[str, ...]
    """The union of the platform level's, the module level's and the QE level's (in that
    order; the QvE reports the platform level's alone, §2.6)."""
    tcb_date: datetime | None
    """The matched platform level's ``tcbDate`` (the TDX level's for TDX)."""
    sgx_level: TcbLevel | None = None
    tdx_level: TcbLevel | None = None
    module: TdxModule | None = None
    """The TDX module identity that applied (``tdxModule`` when TEE_TCB_SVN[1] is 0)."""
    module_level: IsvLevel | None = None
    module_status: str | None = None
    """None when no module identity level applies (TEE_TCB_SVN[1] == 0)."""
    qe_level: IsvLevel | None = None
    qe_status: str | None = None
    """None when no QE identity was evaluated."""

    @property
    def platform_level(self) -> TcbLevel | None:
        return self.tdx_level if self.tdx_level is not None else self.sgx_level

    @property
    def platform_status(self) -> str | None:
        level = self.platform_level
        return level.status if level is not None else None

    def raise_for_status(self) -> None:
        """RevokedError for ``Revoked``, BindingError for ``TcbNotSupported`` (CONTRACT:
        rejected); every other status is a claim for policy."""
        if self.status == REVOKED:
            raise RevokedError(f"the TCB status is Revoked (platform {self.platform_status}, "
                               f"TDX module {self.module_status}, QE {self.qe_status})")
        if self.status == TCB_NOT_SUPPORTED:
            raise BindingError("the platform's TCB matches no level of the TCB Info, of its "
                               "TDX module identity or of the QE identity (TcbNotSupported)")


# -- which collateral applies (§2.4 steps 9, 10, 15) ------------------------------------------


def check_tcb_info_applies(info: TcbInfo, platform: PlatformTcb) -> None:
    """§2.4 steps 9–10: a TDX TCB Info for a TD quote, an SGX one for an enclave quote, and
    the PCK certificate's FMSPC and PCE-ID.

    Raises:
        BindingError: any of them differs.
    """
    wanted = "TDX" if platform.tdx else "SGX"
    if info.id != wanted:
        raise BindingError(f"the TCB Info is for {info.id}; the quote needs {wanted}")
    if info.fmspc != platform.fmspc:
        raise BindingError(f"the TCB Info is for FMSPC {info.fmspc.hex()}; the PCK "
                           f"certificate says {platform.fmspc.hex()}")
    if info.pce_id != platform.pce_id:
        raise BindingError(f"the TCB Info is for PCE-ID {info.pce_id.hex()}; the PCK "
                           f"certificate says {platform.pce_id.hex()}")


def check_qe_identity_applies(identity: EnclaveIdentity, platform: PlatformTcb) -> None:
    """§2.4 step 15: ``TD_QE`` for a TD quote, ``QE`` for an enclave quote.

    Raises:
        BindingError: another identity (``QVE`` or the other TEE's).
    """
    wanted = "TD_QE" if platform.tdx else "QE"
    if identity.id != wanted:
        raise BindingError(f"the enclave identity is {identity.id}; the quote's QE needs "
                           f"{wanted}")


# -- the TDX module (§2.4 step 12, §2.5) ------------------------------------------------------


def module_identity_id(version: int) -> str:
    """``TDX_%02X`` of TEE_TCB_SVN[1] (QVL ``findTdxModuleIdentity``)."""
    return f"TDX_{version:02X}"


def find_module_identity(info: TcbInfo, version: int) -> TdxModule:
    """The ``tdxModuleIdentities`` entry for module major ``version`` (ids compared in upper
    case, as QVL does).

    Raises:
        BindingError: none (QVL ``STATUS_TDX_MODULE_MISMATCH``).
    """
    wanted = module_identity_id(version)
    for identity in info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    known = ", ".join(i.id for i in info.tdx_module_identities) or "none"
    raise BindingError(f"TEE_TCB_SVN[1] is {version}, so the TDX module identity {wanted} "
                       f"applies; the TCB Info has {known}")


def check_tdx_module(info: TcbInfo, platform: PlatformTcb) -> TdxModule:
    """§2.4 step 12: the module identity for TEE_TCB_SVN[1] (``tdxModule`` when it is 0)
    must have the quote's MRSIGNERSEAM, and SEAMATTRIBUTES must be all zero and equal to the
    identity's attributes (QVL's rule; the mask is not applied).

    Raises:
        BindingError: no such identity, or a value differs.
    """
    svn, signer, attributes = _tdx_fields(platform)
    identity = find_module_identity(info, svn[1]) if svn[1] > 0 else info.tdx_module
    if identity is None:
        raise BindingError("the TDX TCB Info has no tdxModule")
    name = identity.id or "tdxModule"
    if signer != identity.mrsigner:
        raise BindingError(f"MRSIGNERSEAM is {signer.hex()}; the TCB Info's {name} has "
                           f"mrsigner {identity.mrsigner.hex()}")
    if attributes != bytes(8) or attributes != identity.attributes:
        raise BindingError(f"SEAMATTRIBUTES is {attributes.hex()}; it must be zero and equal "
                           f"to the attributes of {name}, {identity.attributes.hex()}")
    return identity


def tdx_module_status(info: TcbInfo, platform: PlatformTcb) -> ModuleMatch:
    """§2.5 (QVL ``checkTdxModuleTcbStatus``): with TEE_TCB_SVN[1] == 0 no module identity
    applies (status None); else the first level of ``TDX_%02X`` whose isvsvn TEE_TCB_SVN[0]
    reaches gives the status, and none gives ``TcbNotSupported``.

    Raises:
        BindingError: no identity for TEE_TCB_SVN[1].
        MalformedEvidenceError: the matched level's status is not UpToDate, OutOfDate or
            Revoked.
    """
    svn = _tdx_fields(platform)[0]
    if svn[1] == 0:
        return None, None, None
    identity = find_module_identity(info, svn[1])
    for i, level in enumerate(identity.tcb_levels):
        if svn[0] >= level.isv_svn:
            where = f"tdxModuleIdentities[{identity.id}].tcbLevels[{i}].tcbStatus"
            return identity, level, _known(level.status, MODULE_STATUSES, where)
    return identity, None, TCB_NOT_SUPPORTED


def _tdx_fields(platform: PlatformTcb) -> tuple[bytes, bytes, bytes]:
    if (platform.tee_tcb_svn is None or platform.mr_signer_seam is None
            or platform.seam_attributes is None):
        raise MisuseError("TDX module checks need a TDX PlatformTcb")
    return platform.tee_tcb_svn, platform.mr_signer_seam, platform.seam_attributes


# -- the QE identity (§2.4 step 16) -----------------------------------------------------------


def qe_identity_status(identity: EnclaveIdentity,
                       report: QeReport) -> tuple[IsvLevel | None, str]:
    """§2.4 step 16 (QVL ``EnclaveReportVerifier``): MISCSELECT and ATTRIBUTES under their
    masks, MRSIGNER and ISVPRODID must match; then the first level (in the order served) whose
    isvsvn the QE reaches gives ``UpToDate``, ``Revoked`` or (any other status)
    ``OutOfDate``; none gives ``TcbNotSupported``.

    Raises:
        BindingError: a field does not match (QVL ``STATUS_QE_IDENTITY_MISMATCH``).
    """
    _match_qe(identity, report)
    for level in identity.tcb_levels:
        if level.isv_svn <= report.isv_svn:
            status = level.status if level.status in (UP_TO_DATE, REVOKED) else OUT_OF_DATE
            return level, status
    return None, TCB_NOT_SUPPORTED


def _match_qe(identity: EnclaveIdentity, report: QeReport) -> None:
    name = f"the {identity.id} identity"
    masked_misc = report.misc_select & identity.miscselect_mask
    if masked_misc != identity.miscselect:
        raise BindingError(f"the QE's MISCSELECT under the mask is {masked_misc:08x}; {name} "
                           f"says {identity.miscselect:08x}")
    masked = bytes(a & m for a, m in zip(report.attributes, identity.attributes_mask,
                                         strict=True))
    if masked != identity.attributes:
        raise BindingError(f"the QE's ATTRIBUTES under the mask are {masked.hex()}; {name} "
                           f"says {identity.attributes.hex()}")
    if report.mr_signer != identity.mrsigner:
        raise BindingError(f"the QE's MRSIGNER is {report.mr_signer.hex()}; {name} says "
                           f"{identity.mrsigner.hex()}")
    if report.isv_prod_id != identity.isv_prod_id:
        raise BindingError(f"the QE's ISVPRODID is {report.isv_prod_id}; {name} says "
                           f"{identity.isv_prod_id}")


# -- TCB levels (§2.5) ------------------------------------------------------------------------


def sorted_levels(info: TcbInfo) -> tuple[TcbLevel, ...]:
    """The TCB levels highest first, by (SGX components, PCESVN, TDX components), keeping the
    first of equal keys (QVL's ``std::set<TcbLevel, greater>``)."""
    seen: dict[tuple[tuple[int, ...], int, tuple[int, ...]], TcbLevel] = {}
    for level in info.tcb_levels:
        seen.setdefault(_key(level), level)
    return tuple(seen[key] for key in sorted(seen, reverse=True))


def _key(level: TcbLevel) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    return level.sgx_components, level.pce_svn, level.tdx_components or ()


def match_levels(info: TcbInfo, platform: PlatformTcb, *,
                 compare_all_tdx_components: bool = False) -> tuple[TcbLevel | None,
                                                                    TcbLevel | None]:
    """(SGX level, TDX level) by QVL's ``matchTcbLevels`` (§2.5): the first level whose
    SGX components and PCESVN the PCK certificate reaches is the SGX level; for TDX the first
    such level whose TDX components TEE_TCB_SVN also reaches is the TDX level, where bytes 0
    and 1 are skipped when TEE_TCB_SVN[1] > 0 (the module identity covers them) unless
    ``compare_all_tdx_components`` (dcap-qvl's rule, §2.9)."""
    sgx_level: TcbLevel | None = None
    for level in sorted_levels(info):
        if not _reaches(platform.sgx_components, level.sgx_components) or (
                platform.pce_svn < level.pce_svn):
            continue
        if platform.tee_tcb_svn is None:
            return level, None
        sgx_level = sgx_level or level
        if _tdx_reaches(platform.tee_tcb_svn, level, compare_all_tdx_components):
            return sgx_level, level
    return sgx_level, None


def _reaches(have: Sequence[int], need: Sequence[int], start: int = 0) -> bool:
    return all(have[i] >= need[i] for i in range(start, len(need)))


def _tdx_reaches(svn: bytes, level: TcbLevel, all_bytes: bool) -> bool:
    if level.tdx_components is None:
        return False
    start = 0 if all_bytes or svn[1] == 0 else 2
    return _reaches(svn, level.tdx_components, start)


def _known(status: str, allowed: Sequence[str], where: str) -> str:
    """QVL ``STATUS_TCB_UNRECOGNIZED_STATUS``: an unknown status fails closed."""
    if status not in allowed:
        raise MalformedEvidenceError(f"{where} is {status!r}, not one of {', '.join(allowed)}")
    return status


# -- convergence (§2.6) -----------------------------------------------------------------------


def _out_of_date(status: str) -> str | None:
    """The status an OutOfDate module or QE turns ``status`` into (None: unchanged)."""
    if status in (UP_TO_DATE, SW_HARDENING_NEEDED):
        return OUT_OF_DATE
    if status in (CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED):
        return OUT_OF_DATE_CONFIGURATION_NEEDED
    return None


def converge_with_module(tdx_status: str, module_status: str | None) -> str:
    """QVL ``convergeTcbStatusWithTdxModuleStatus`` (§2.6)."""
    if module_status == OUT_OF_DATE:
        return _out_of_date(tdx_status) or tdx_status
    if module_status == REVOKED:
        return REVOKED
    return tdx_status


def converge_with_qe(status: str, qe_status: str | None) -> str:
    """QVL ``convergeTcbStatusWithQeTcbStatus`` (§2.6): a QE OutOfDate lowers UpToDate and
    SWHardeningNeeded to OutOfDate and the configuration-needed ones to
    OutOfDateConfigurationNeeded; a revoked QE revokes; an unsupported one is unsupported."""
    if qe_status == OUT_OF_DATE:
        lowered = _out_of_date(status)
        if lowered is not None:
            return lowered
    if qe_status == REVOKED:
        return REVOKED
    if qe_status == TCB_NOT_SUPPORTED:
        return TCB_NOT_SUPPORTED
    return status


def relaunch_status(info: TcbInfo, platform: PlatformTcb, *, sgx_status: str, tdx_status: str,
                    module_status: str | None, qe_status: str | None) -> str:
    """QVL ``checkForRelaunch`` (§2.6), for TD report 1.5: when only the TDX module is out of
    date and TEE_TCB_SVN2 shows the TD could run on the latest module, ``TDRelaunchAdvised``
    (``…ConfigurationNeeded`` when the SGX or TDX status needs configuration); otherwise
    ``tdx_status``.

    Raises:
        BindingError: TEE_TCB_SVN2[1] names a module identity the TCB Info lacks.
    """
    svn2 = platform.tee_tcb_svn2
    if (svn2 is None or qe_status in (OUT_OF_DATE, REVOKED, TCB_NOT_SUPPORTED)
            or sgx_status not in (UP_TO_DATE, SW_HARDENING_NEEDED, CONFIGURATION_NEEDED,
                                  CONFIGURATION_AND_SW_HARDENING_NEEDED)
            or tdx_status not in (OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED)
            or module_status != OUT_OF_DATE):
        return tdx_status
    levels = sorted_levels(info)
    latest = levels[0].tdx_components if levels else None
    if latest is None:
        return TCB_NOT_SUPPORTED
    if svn2[1] == 0:
        advised = svn2[0] >= latest[0] and svn2[2] >= latest[2]
    else:
        module_levels = find_module_identity(info, svn2[1]).tcb_levels
        advised = bool(module_levels) and svn2[0] >= module_levels[0].isv_svn and (
            svn2[2] >= latest[2])
    if not advised:
        return tdx_status
    if sgx_status in _CONFIGURATION or tdx_status in _CONFIGURATION:
        return TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
    return TD_RELAUNCH_ADVISED


# -- the whole evaluation (§2.4 step 18) ------------------------------------------------------


def evaluate_tcb(info: TcbInfo, platform: PlatformTcb, *,
                 qe_identity: EnclaveIdentity | None = None, qe_report: QeReport | None = None,
                 compare_all_tdx_components: bool = False) -> TcbVerdict:
    """The TCB status of a platform in QVL's order (§2.4 steps 9–10, 12, 15–16, 18; §2.5;
    §2.6): the TCB Info applies, the TDX module identity matches, the QE identity matches and
    gives the QE status, then levels are matched and the statuses converged. Without
    ``qe_identity`` the QE is not evaluated (a platform-only verdict).

    Raises:
        BindingError: the TCB Info or QE identity does not apply, or an identity does not
            match (terminal in QVL).
        MalformedEvidenceError: a matched level's status is unknown.
        MisuseError: ``qe_identity`` without ``qe_report``.
    """
    check_tcb_info_applies(info, platform)
    module = check_tdx_module(info, platform) if platform.tdx else None
    qe_level, qe_status = _qe(platform, qe_identity, qe_report)
    sgx_level, tdx_level = match_levels(
        info, platform, compare_all_tdx_components=compare_all_tdx_components)
    base = TcbVerdict(TCB_NOT_SUPPORTED, (), None, sgx_level, tdx_level, module,
                      qe_level=qe_level, qe_status=qe_status)
    if sgx_level is None or (platform.tdx and tdx_level is None):
        return base
    sgx_status = _known(sgx_level.status, TCB_STATUSES, "the SGX TCB level's tcbStatus")
    if not platform.tdx:
        return _verdict(base, converge_with_qe(sgx_status, qe_status))
    return _tdx_verdict(info, platform, base, sgx_status)


def _qe(platform: PlatformTcb, identity: EnclaveIdentity | None,
        report: QeReport | None) -> tuple[IsvLevel | None, str | None]:
    if identity is None:
        return None, None
    if report is None:
        raise MisuseError("a QE identity was given without the QE report to match it against")
    check_qe_identity_applies(identity, platform)
    return qe_identity_status(identity, report)


def _tdx_verdict(info: TcbInfo, platform: PlatformTcb, base: TcbVerdict,
                 sgx_status: str) -> TcbVerdict:
    tdx_level = base.tdx_level
    assert tdx_level is not None
    identity, module_level, module_status = tdx_module_status(info, platform)
    base = replace(base, module=identity or base.module, module_level=module_level,
                    module_status=module_status)
    if module_status == TCB_NOT_SUPPORTED:
        return base
    level_status = _known(tdx_level.status, TCB_STATUSES, "the TDX TCB level's tcbStatus")
    tdx_status = converge_with_module(level_status, module_status)
    if tdx_status == REVOKED:
        return _verdict(base, REVOKED)
    tdx_status = relaunch_status(info, platform, sgx_status=sgx_status, tdx_status=tdx_status,
                                 module_status=module_status, qe_status=base.qe_status)
    return _verdict(base, converge_with_qe(tdx_status, base.qe_status))


def _verdict(base: TcbVerdict, status: str) -> TcbVerdict:
    """``base`` with its final ``status``, advisory IDs and TCB date."""
    if status == TCB_NOT_SUPPORTED:
        return base
    level = base.platform_level
    advisories: dict[str, None] = {}
    for source in (level, base.module_level, base.qe_level):
        if source is not None:
            advisories.update(dict.fromkeys(source.advisory_ids))
    return replace(base, status=status, advisory_ids=tuple(advisories),
                    tcb_date=level.tcb_date if level else None)


__all__ = [
    "CONFIGURATION_AND_SW_HARDENING_NEEDED", "CONFIGURATION_NEEDED", "OUT_OF_DATE",
    "OUT_OF_DATE_CONFIGURATION_NEEDED", "REVOKED", "STATUSES", "SW_HARDENING_NEEDED",
    "TCB_NOT_SUPPORTED", "TD_RELAUNCH_ADVISED", "TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED",
    "UP_TO_DATE", "ModuleMatch", "PlatformTcb", "QeReport", "TcbVerdict",
    "check_qe_identity_applies", "check_tcb_info_applies", "check_tdx_module",
    "converge_with_module", "converge_with_qe",
    "evaluate_tcb", "find_module_identity", "match_levels", "module_identity_id",
    "qe_identity_status", "relaunch_status", "sorted_levels", "tdx_module_status",
]
