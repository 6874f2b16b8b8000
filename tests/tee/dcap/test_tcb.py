"""TCB level matching and status convergence (intel-dcap.md §2.4 steps 9–10, 12, 15–16, 18;
§2.5; §2.6; §2.9): one synthetic case per rule, then the corpus verdicts of the MANIFEST.

Synthetic TCB Infos are built here as values; the corpus cases read the quotes' TCB values
from the MANIFEST (``expected.pck``, ``expected.report``, ``expected.qe_report``) and, where the
MANIFEST lists no value (SEAMATTRIBUTES, TEE_TCB_SVN2), from the quote bytes at the offsets of
§1.4, without the quote parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import corpus_dir, manifest
from veritee.collateral import CollateralFile
from veritee.errors import (
    BindingError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    RevokedError,
)
from veritee.tee.dcap import collateral as col
from veritee.tee.dcap import tcb
from veritee.tee.dcap.collateral import EnclaveIdentity, IsvLevel, TcbInfo, TcbLevel, TdxModule
from veritee.tee.dcap.tcb import PlatformTcb, QeReport

DATE = datetime(2024, 3, 13, tzinfo=UTC)
OLD = datetime(2018, 1, 4, tzinfo=UTC)
FMSPC = bytes.fromhex("00806f050000")


def _pad(values: tuple[int, ...]) -> tuple[int, ...]:
    return values + (0,) * (16 - len(values))


def level(sgx: tuple[int, ...] = (2, 2), *, pce: int = 11, tdx: tuple[int, ...] | None = None,
          status: str = "UpToDate", advisories: tuple[str, ...] = (),
          date: datetime = DATE) -> TcbLevel:
    return TcbLevel(_pad(sgx), pce, _pad(tdx) if tdx is not None else None, date, status,
                    advisories)


def module(ident: str = "TDX_01", levels: tuple[tuple[Any, ...], ...] = (
        (4, "UpToDate"), (2, "OutOfDate", ("INTEL-SA-01036",))),
           attributes: bytes = bytes(8), mask: bytes = b"\xff" * 8,
           signer: bytes = bytes(48)) -> TdxModule:
    return TdxModule(signer, attributes, mask, ident,
                     tuple(IsvLevel(lv[0], DATE, lv[1], *lv[2:]) for lv in levels))


def info(*levels: TcbLevel, tdx: bool = False,
         identities: tuple[TdxModule, ...] = (), base_module: TdxModule | None = None) -> TcbInfo:
    return TcbInfo("TDX" if tdx else "SGX", 3, DATE, DATE, FMSPC, b"\0\0", 0, 17, levels,
                   (base_module or TdxModule(bytes(48), bytes(8), b"\xff" * 8)) if tdx else None,
                   identities)


def platform(sgx: tuple[int, ...] = (2, 2), pce: int = 11, svn: bytes | None = None, *,
             svn2: bytes | None = None, seam: bytes = bytes(8),
             signer: bytes = bytes(48)) -> PlatformTcb:
    tdx = svn is not None
    return PlatformTcb(_pad(sgx), pce, FMSPC, b"\0\0", tee_tcb_svn=svn.ljust(16, b"\0") if svn
                       else None, mr_signer_seam=signer if tdx else None,
                       seam_attributes=seam if tdx else None,
                       tee_tcb_svn2=svn2.ljust(16, b"\0") if svn2 else None)


QE_SIGNER = b"\x8c" * 32
QE_REPORT = QeReport(0, bytes.fromhex("15000000000000000700000000000000"), QE_SIGNER, 1, 10)


def identity(levels: tuple[tuple[Any, ...], ...] = ((8, "UpToDate"),
                                                   (6, "OutOfDate", ("INTEL-SA-00615",))),
             ident: str = "QE", **changes: Any) -> EnclaveIdentity:
    value = EnclaveIdentity(ident, 2, DATE, DATE, 17, 0, 0xFFFFFFFF,
                            bytes.fromhex("11" + "00" * 15),
                            bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000"), QE_SIGNER, 1,
                            tuple(IsvLevel(lv[0], DATE, lv[1], *lv[2:]) for lv in levels))
    return replace(value, **changes)


@dataclass(frozen=True)
class Case:
    name: str
    info: Callable[[], TcbInfo]
    platform: Callable[[], PlatformTcb]
    status: str
    advisories: tuple[str, ...] = ()
    qe: EnclaveIdentity | None = None
    report: QeReport = QE_REPORT
    options: dict[str, Any] = field(default_factory=dict)


TDX_LEVELS = (level(tdx=(5, 0, 7)), level(tdx=(3, 0, 6), status="OutOfDate",
                                          advisories=("INTEL-SA-00837",), date=OLD))


def tdx_info(*levels: TcbLevel, modules: tuple[TdxModule, ...] = (module(),)) -> TcbInfo:
    return info(*(levels or TDX_LEVELS), tdx=True, identities=modules)


def qe_out_of_date(platform_status: str) -> Case:
    return Case(f"qe_out_of_date_with_{platform_status}",
                lambda: info(level(status=platform_status)), platform,
                {"UpToDate": "OutOfDate", "SWHardeningNeeded": "OutOfDate",
                 "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
                 "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded"}.get(
                     platform_status, platform_status), ("INTEL-SA-00615",),
                qe=identity(((12, "UpToDate"), (6, "OutOfDate", ("INTEL-SA-00615",)))))


def module_out_of_date(level_status: str, expected: str) -> Case:
    return Case(f"module_out_of_date_with_{level_status}",
                lambda: tdx_info(level(tdx=(0, 0, 7), status=level_status)),
                lambda: platform(svn=bytes([3, 1, 7])), expected, ("INTEL-SA-01036",))


CASES = [
    # §2.5, SGX: levels sorted highest first, first one the PCK certificate reaches
    Case("sgx_levels_are_sorted_before_matching",
         lambda: info(level((2, 2), status="SWHardeningNeeded"), level((3, 2))),
         lambda: platform((3, 3)), "UpToDate"),
    Case("sgx_a_lower_component_skips_the_level",
         lambda: info(level((2, 2, 0, 0, 0, 0, 1)), level((2, 2), status="SWHardeningNeeded",
                                                          advisories=("INTEL-SA-00615",))),
         platform, "SWHardeningNeeded", ("INTEL-SA-00615",)),
    Case("sgx_a_lower_pcesvn_skips_the_level",
         lambda: info(level(pce=12), level(pce=5, status="OutOfDate", advisories=("SA-1",))),
         lambda: platform(pce=11), "OutOfDate", ("SA-1",)),
    Case("sgx_no_level_reached", lambda: info(level((3, 3))), platform, "TcbNotSupported"),
    Case("sgx_revoked_level", lambda: info(level(status="Revoked")), platform, "Revoked"),
    Case("sgx_configuration_needed_is_kept",
         lambda: info(level(status="ConfigurationAndSWHardeningNeeded",
                            advisories=("INTEL-SA-00289", "INTEL-SA-00615"))),
         platform, "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00289", "INTEL-SA-00615")),
    # §2.5, TDX: TEE_TCB_SVN[0..1] skipped when TEE_TCB_SVN[1] > 0 (module identity instead)
    Case("tdx_module_bytes_skipped_when_the_major_is_positive", tdx_info,
         lambda: platform(svn=bytes([4, 1, 7])), "UpToDate"),
    Case("tdx_dcap_qvl_compares_all_16_bytes", tdx_info,
         lambda: platform(svn=bytes([4, 1, 7])), "OutOfDate", ("INTEL-SA-00837",),
         options={"compare_all_tdx_components": True}),
    Case("tdx_all_bytes_compared_when_the_major_is_zero", tdx_info,
         lambda: platform(svn=bytes([4, 0, 7])), "OutOfDate", ("INTEL-SA-00837",)),
    Case("tdx_no_tdx_level_reached", tdx_info, lambda: platform(svn=bytes([4, 0, 5])),
         "TcbNotSupported"),
    Case("tdx_levels_with_equal_sgx_part_sorted_by_tdx_components",
         lambda: tdx_info(level(tdx=(5, 0, 7), status="SWHardeningNeeded"),
                          level(tdx=(6, 0, 7))),
         lambda: platform(svn=bytes([6, 0, 7])), "UpToDate"),
    # §2.5 / §2.6: the TDX module identity's level, converged
    module_out_of_date("UpToDate", "OutOfDate"),
    module_out_of_date("SWHardeningNeeded", "OutOfDate"),
    module_out_of_date("ConfigurationNeeded", "OutOfDateConfigurationNeeded"),
    module_out_of_date("ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded"),
    module_out_of_date("OutOfDateConfigurationNeeded", "OutOfDateConfigurationNeeded"),
    Case("module_revoked_revokes",
         lambda: tdx_info(modules=(module(levels=((4, "Revoked"),)),)),
         lambda: platform(svn=bytes([4, 1, 7])), "Revoked"),
    Case("module_below_every_level", tdx_info, lambda: platform(svn=bytes([1, 1, 7])),
         "TcbNotSupported"),
    Case("module_identity_ids_compare_in_upper_case",
         lambda: tdx_info(modules=(module("tdx_01"),)),
         lambda: platform(svn=bytes([4, 1, 7])), "UpToDate"),
    Case("module_levels_in_the_order_served",
         lambda: tdx_info(modules=(module(levels=((2, "OutOfDate"), (4, "UpToDate"))),)),
         lambda: platform(svn=bytes([4, 1, 7])), "OutOfDate"),
    # §2.4 step 16 / §2.6: the QE identity
    Case("qe_up_to_date_keeps_the_platform_status", lambda: info(level()), platform,
         "UpToDate", qe=identity()),
    qe_out_of_date("UpToDate"),
    qe_out_of_date("SWHardeningNeeded"),
    qe_out_of_date("ConfigurationNeeded"),
    qe_out_of_date("ConfigurationAndSWHardeningNeeded"),
    qe_out_of_date("OutOfDateConfigurationNeeded"),
    Case("qe_revoked_revokes", lambda: info(level()), platform, "Revoked",
         qe=identity(((12, "UpToDate"), (6, "Revoked")))),
    Case("qe_below_every_level", lambda: info(level()), platform, "TcbNotSupported",
         qe=identity(((12, "UpToDate"),))),
    Case("qe_levels_in_the_order_served", lambda: info(level()), platform, "OutOfDate",
         ("SA-Q",), qe=identity(((6, "OutOfDate", ("SA-Q",)), (8, "UpToDate")))),
    Case("qe_other_statuses_count_as_out_of_date", lambda: info(level()), platform,
         "OutOfDate", qe=identity(((8, "SWHardeningNeeded"),))),
    Case("qe_attributes_compared_under_the_mask", lambda: info(level()), platform, "UpToDate",
         qe=identity(),
         report=replace(QE_REPORT, attributes=bytes.fromhex("15" + "00" * 7 + "ff" * 8))),
    Case("advisories_of_platform_module_and_qe_in_that_order",
         lambda: tdx_info(level(tdx=(0, 0, 7), advisories=("SA-P", "SA-Q"))),
         lambda: platform(svn=bytes([3, 1, 7])), "OutOfDate",
         ("SA-P", "SA-Q", "INTEL-SA-01036"),
         qe=identity(((12, "UpToDate"), (6, "OutOfDate", ("SA-Q",))), ident="TD_QE")),
    Case("an_unknown_status_on_an_unmatched_level_is_ignored",
         lambda: info(level(), level((1, 1), status="Whatever")), platform, "UpToDate"),
]

RELAUNCH_MODULE = module(levels=((6, "UpToDate"), (2, "OutOfDate")))


def relaunch(name: str, status: str, *, svn2: bytes, level_status: str = "UpToDate",
             qe: EnclaveIdentity | None = None, svn: bytes = bytes([3, 1, 3])) -> Case:
    """TD report 1.5; the latest level is TDX ``[5, 0, 3]`` and TDX_01's latest isvsvn 6."""
    return Case(name, lambda: tdx_info(level(tdx=(5, 0, 3), status=level_status),
                                       modules=(RELAUNCH_MODULE,)),
                lambda: platform(svn=svn, svn2=svn2), status, qe=qe)


def _run(case: Case) -> tcb.TcbVerdict:
    return tcb.evaluate_tcb(case.info(), case.platform(), qe_identity=case.qe,
                            qe_report=case.report, **case.options)


CASES += [
    relaunch("relaunch_advised_by_the_module_identity", "TDRelaunchAdvised",
             svn2=bytes([7, 1, 3])),
    relaunch("relaunch_advised_configuration_needed", "TDRelaunchAdvisedConfigurationNeeded",
             svn2=bytes([7, 1, 3]), level_status="ConfigurationNeeded"),
    relaunch("relaunch_not_advised_below_the_latest_module", "OutOfDate",
             svn2=bytes([5, 1, 3])),
    relaunch("relaunch_not_advised_below_the_latest_microcode", "OutOfDate",
             svn2=bytes([7, 1, 2])),
    relaunch("relaunch_advised_by_the_latest_level_when_svn2_major_is_zero",
             "TDRelaunchAdvised", svn2=bytes([5, 0, 3])),
    relaunch("relaunch_not_considered_when_the_qe_is_out_of_date", "OutOfDate",
             svn2=bytes([7, 1, 3]), qe=identity(((12, "UpToDate"), (6, "OutOfDate")),
                                                ident="TD_QE")),
    relaunch("relaunch_not_considered_when_the_module_is_up_to_date", "UpToDate",
             svn2=bytes([7, 1, 3]), svn=bytes([7, 1, 3])),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tcb_rules(case: Case) -> None:
    verdict = _run(case)
    assert (verdict.status, verdict.advisory_ids) == (case.status, case.advisories)
    if case.status == "TcbNotSupported":
        assert verdict.tcb_date is None
    else:
        assert verdict.tcb_date == verdict.platform_level.tcb_date  # type: ignore[union-attr]


def test_the_first_sgx_level_is_kept_while_the_tdx_level_is_sought() -> None:
    top = level((3, 3), tdx=(9, 0, 9), status="SWHardeningNeeded")
    low = level((2, 2), tdx=(0, 0, 0), status="OutOfDate", date=OLD)
    verdict = tcb.evaluate_tcb(tdx_info(low, top), platform((3, 3), svn=bytes([4, 0, 1])))
    assert (verdict.sgx_level, verdict.tdx_level, verdict.status) == (top, low, "OutOfDate")
    assert verdict.tcb_date == OLD and verdict.platform_status == "OutOfDate"
    assert verdict.module_status is None and verdict.module == tdx_info().tdx_module


def test_verdicts_say_where_the_status_came_from() -> None:
    verdict = tcb.evaluate_tcb(tdx_info(), platform(svn=bytes([3, 1, 7])),
                               qe_identity=identity(ident="TD_QE"), qe_report=QE_REPORT)
    assert verdict.status == "OutOfDate" and verdict.module_status == "OutOfDate"
    assert verdict.module is not None and verdict.module.id == "TDX_01"
    assert verdict.module_level is not None and verdict.module_level.isv_svn == 2
    assert (verdict.qe_status, verdict.qe_level) == ("UpToDate", identity().tcb_levels[0])


ERROR_CASES: list[tuple[str, Callable[[], Any], type, str]] = [
    ("tcb_info_for_the_other_tee", lambda: tcb.evaluate_tcb(tdx_info(), platform()),
     BindingError, "TCB Info is for TDX; the quote needs SGX"),
    ("tcb_info_for_another_fmspc", lambda: tcb.evaluate_tcb(
        replace(info(level()), fmspc=bytes(6)), platform()), BindingError, "FMSPC 000000000000"),
    ("tcb_info_for_another_pce_id", lambda: tcb.evaluate_tcb(
        replace(info(level()), pce_id=b"\0\1"), platform()), BindingError, "PCE-ID 0001"),
    ("module_identity_missing", lambda: tcb.evaluate_tcb(
        tdx_info(), platform(svn=bytes([4, 3, 7]))), BindingError, "TDX_03 applies"),
    ("mrsignerseam_differs", lambda: tcb.evaluate_tcb(
        tdx_info(), platform(svn=bytes([4, 1, 7]), signer=b"\1" * 48)), BindingError,
     "MRSIGNERSEAM is 0101"),
    ("mrsignerseam_differs_from_tdx_module", lambda: tcb.evaluate_tcb(
        tdx_info(), platform(svn=bytes([4, 0, 7]), signer=b"\1" * 48)), BindingError,
     "tdxModule has mrsigner"),
    ("seam_attributes_not_zero", lambda: tcb.evaluate_tcb(
        tdx_info(modules=(module(attributes=b"\1" + bytes(7), mask=bytes(8)),)),
        platform(svn=bytes([4, 1, 7]), seam=b"\1" + bytes(7))), BindingError,
     "must be zero"),
    ("module_attributes_not_zero", lambda: tcb.evaluate_tcb(
        tdx_info(modules=(module(attributes=b"\1" + bytes(7)),)),
        platform(svn=bytes([4, 1, 7]))), BindingError, "equal to the attributes of TDX_01"),
    ("qe_identity_for_the_other_tee", lambda: tcb.evaluate_tcb(
        info(level()), platform(), qe_identity=identity(ident="TD_QE"), qe_report=QE_REPORT),
     BindingError, "identity is TD_QE; the quote's QE needs QE"),
    ("qve_identity_for_a_qe", lambda: tcb.evaluate_tcb(
        info(level()), platform(), qe_identity=identity(ident="QVE"), qe_report=QE_REPORT),
     BindingError, "identity is QVE"),
    ("qe_miscselect", lambda: tcb.qe_identity_status(identity(), replace(QE_REPORT,
                                                                           misc_select=1)),
     BindingError, "MISCSELECT under the mask is 00000001"),
    ("qe_attributes", lambda: tcb.qe_identity_status(identity(), replace(
        QE_REPORT, attributes=bytes(16))), BindingError, "ATTRIBUTES under the mask"),
    ("qe_mrsigner", lambda: tcb.qe_identity_status(identity(), replace(
        QE_REPORT, mr_signer=bytes(32))), BindingError, "MRSIGNER is 0000"),
    ("qe_isvprodid", lambda: tcb.qe_identity_status(identity(), replace(
        QE_REPORT, isv_prod_id=2)), BindingError, "ISVPRODID is 2"),
    ("relaunch_names_a_missing_module_identity", lambda: _run(relaunch(
        "", "", svn2=bytes([7, 2, 3]))), BindingError, "TDX_02 applies"),
    ("unknown_status_of_the_matched_level", lambda: tcb.evaluate_tcb(
        info(level(status="Fine")), platform()), MalformedEvidenceError,
     "SGX TCB level's tcbStatus is 'Fine'"),
    ("unknown_status_of_the_tdx_level", lambda: tcb.evaluate_tcb(
        tdx_info(level((3, 3), tdx=(9, 0, 9)), level(tdx=(0,), status="Fine")),
        platform((3, 3), svn=bytes([4, 0, 1]))),
     MalformedEvidenceError, "TDX TCB level's tcbStatus"),
    ("module_status_outside_the_module_set", lambda: tcb.evaluate_tcb(
        tdx_info(modules=(module(levels=((4, "SWHardeningNeeded"),)),)),
        platform(svn=bytes([4, 1, 7]))), MalformedEvidenceError, "not one of UpToDate"),
    ("qe_identity_without_a_report", lambda: tcb.evaluate_tcb(
        info(level()), platform(), qe_identity=identity(), qe_report=None), MisuseError,
     "without the QE report"),
    ("platform_with_15_components", lambda: PlatformTcb((1,) * 15, 0, FMSPC, b"\0\0"),
     MisuseError, "16 values"),
    ("platform_with_a_short_fmspc", lambda: PlatformTcb((1,) * 16, 0, b"\0", b"\0\0"),
     MisuseError, "fmspc is 1 bytes"),
    ("tdx_platform_without_seam_fields", lambda: PlatformTcb(
        (1,) * 16, 0, FMSPC, b"\0\0", tee_tcb_svn=bytes(16)), MisuseError, "mr_signer_seam"),
    ("qe_report_with_short_attributes", lambda: QeReport(0, bytes(8), QE_SIGNER, 1, 1),
     MisuseError, "16 bytes"),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_tcb_errors(name: str, call: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_raise_for_status() -> None:
    revoked = tcb.evaluate_tcb(info(level(status="Revoked")), platform())
    with pytest.raises(RevokedError, match="TCB status is Revoked"):
        revoked.raise_for_status()
    unsupported = tcb.evaluate_tcb(info(level((9,))), platform())
    with pytest.raises(BindingError, match="TcbNotSupported"):
        unsupported.raise_for_status()
    for status in ("OutOfDate", "SWHardeningNeeded", "OutOfDateConfigurationNeeded"):
        tcb.evaluate_tcb(info(level(status=status)), platform()).raise_for_status()


def test_sorted_levels_keep_the_first_of_equal_keys() -> None:
    first, twin = level(status="OutOfDate"), level(status="UpToDate")
    assert tcb.sorted_levels(info(first, twin, level((3,)))) == (level((3,)), first)


def test_converge_functions_are_asymmetric() -> None:
    """QVL's rules (§2.6), where dcap-qvl's severity merge gives OutOfDate for the first."""
    assert tcb.converge_with_qe("ConfigurationNeeded", "OutOfDate") == (
        "OutOfDateConfigurationNeeded")
    assert tcb.converge_with_qe("OutOfDate", "OutOfDate") == "OutOfDate"
    assert tcb.converge_with_qe("Revoked", "OutOfDate") == "Revoked"
    assert tcb.converge_with_qe("TDRelaunchAdvised", "UpToDate") == "TDRelaunchAdvised"
    assert tcb.converge_with_qe("UpToDate", None) == "UpToDate"
    assert tcb.converge_with_module("SWHardeningNeeded", "OutOfDate") == "OutOfDate"
    assert tcb.converge_with_module("ConfigurationNeeded", "Revoked") == "Revoked"
    assert tcb.converge_with_module("ConfigurationNeeded", None) == "ConfigurationNeeded"
    assert tcb.module_identity_id(1) == "TDX_01" and tcb.module_identity_id(0x1A) == "TDX_1A"


# -- the corpus verdicts ----------------------------------------------------------------------


def _verdicts() -> list[Any]:
    cases = [pytest.param(e, v, id=v["case"]) for e in manifest("intel")
             for v in (e.get("expected") or {}).get("verdicts") or []
             if v["collateral_files"]["kind"] in ("dcap-qvl", "pcs")]
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason="no corpus"))]


def _quote(entry: dict[str, Any]) -> bytes:
    data = (corpus_dir("intel") / entry["file"]).read_bytes()
    if entry["file"].endswith(".hex"):
        data = bytes.fromhex(data.decode().strip().removeprefix("0x"))
    return data


def corpus_platform(entry: dict[str, Any]) -> PlatformTcb:
    """The MANIFEST's PCK and report values; SEAMATTRIBUTES (TD body + 112) and TEE_TCB_SVN2
    (TD body + 584) from the quote bytes (§1.2: the body starts at 48, or 54 in v5)."""
    expected, pck = entry["expected"], entry["expected"]["pck"]
    common = (tuple(pck["sgx_tcb_comp_svn"]), pck["pcesvn"], bytes.fromhex(pck["fmspc"]),
              bytes.fromhex(pck["pceid"]))
    if expected["tee_type"] != "0x81":
        return PlatformTcb(*common)
    body = _quote(entry)[48 if expected["version"] == 4 else 54 :]
    report = expected["report"]
    return PlatformTcb(*common, tee_tcb_svn=bytes.fromhex(report["tee_tcb_svn"]),
                       mr_signer_seam=bytes.fromhex(report["mr_signer_seam"]),
                       seam_attributes=body[112:120],
                       tee_tcb_svn2=body[584:600] if expected["body_type"] == "td15" else None)


def corpus_qe(entry: dict[str, Any]) -> QeReport:
    qe = entry["expected"]["qe_report"]
    return QeReport(qe["misc_select"], bytes.fromhex(qe["attributes"]),
                    bytes.fromhex(qe["mr_signer"]), qe["isv_prod_id"], qe["isv_svn"])


def corpus_collateral(verdict: dict[str, Any]) -> col.RawCollateral:
    """The files the verdict names, plus the issuer chains beside its chains."""
    base = corpus_dir("intel")
    named = verdict["collateral_files"]
    paths: list[Path] = [base / named["path"]] if named["kind"] == "dcap-qvl" else [
        base / named[k] for k in ("tcb_info", "qe_identity", "root_crl", "pck_crl")]
    if "tcb_chain" in named:
        paths += sorted((base / named["tcb_chain"]).parent.glob("*.pem"))
    return col.read_collateral(
        CollateralFile(str(p), p.read_bytes(), "collateral") for p in paths)


def _evaluate(entry: dict[str, Any], verdict: dict[str, Any], **options: Any) -> tcb.TcbVerdict:
    raw, plat = corpus_collateral(verdict), corpus_platform(entry)
    now = datetime.fromisoformat(verdict["verify_time_window"][0])
    kwargs = {"tcb_id": verdict["tcb_info"]["id"], "fmspc": plat.fmspc,
              "pck_ca": entry["expected"]["pck"]["issuer_ca"], "now": now}
    if verdict["verify_time_window_empty"]:  # no instant where all of it is valid
        with pytest.raises(ExpiredError):
            col.verify_collateral(raw, **kwargs)
        tcb_info = col.parse_tcb_info(raw.tcb_infos[0].value)
        qe_identity: EnclaveIdentity | None = col.parse_enclave_identity(
            raw.identities[0].value)
    else:
        bundle = col.verify_collateral(raw, **kwargs)
        tcb_info, qe_identity = bundle.tcb_info, bundle.qe_identity
    return tcb.evaluate_tcb(tcb_info, plat, qe_identity=qe_identity,
                            qe_report=corpus_qe(entry), **options)


@pytest.mark.parametrize(("entry", "verdict"), _verdicts())
def test_corpus_tcb_status_and_advisories(entry: dict[str, Any],
                                          verdict: dict[str, Any]) -> None:
    result = _evaluate(entry, verdict)
    assert result.status == verdict["status"]
    assert list(result.advisory_ids) == (verdict["advisory_ids"] or [])
    detail = verdict["detail"]
    assert result.qe_status == detail["qe_tcb_status"]
    assert list(result.qe_level.advisory_ids if result.qe_level else ()) == detail[
        "qe_advisories"]
    sgx = detail.get("sgx_tcb_level")
    assert (result.sgx_level is None) == (sgx is None)
    if sgx is not None and result.sgx_level is not None:
        assert result.sgx_level.tcb_date == datetime.fromisoformat(sgx["tcbDate"])
        assert result.sgx_level.status == sgx["tcbStatus"]
    module_detail = detail.get("tdx_module")
    if module_detail is not None:
        assert result.module is not None and result.module.id == module_detail["id"]
        assert result.module_status == module_detail["tcbStatus"]
    if "platform_status" in detail:
        assert result.platform_status == detail["platform_status"]


@pytest.mark.parametrize(("entry", "verdict"), _verdicts())
def test_corpus_quotes_do_not_exercise_the_dcap_qvl_divergence(
        entry: dict[str, Any], verdict: dict[str, Any]) -> None:
    """§2.9: these quotes have TEE_TCB_SVN[0] at or above every level's, or a module major of
    0, so dcap-qvl's all-16-bytes rule agrees; the synthetic case
    ``tdx_dcap_qvl_compares_all_16_bytes`` pins the divergence."""
    assert _evaluate(entry, verdict, compare_all_tdx_components=True).status == (
        _evaluate(entry, verdict).status)
