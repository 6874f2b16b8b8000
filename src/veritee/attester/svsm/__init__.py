"""SVSM vTPM evidence collection in an SEV-SNP guest (``snp-svsm-vtpm``): the SVSM's report
and vTPM manifest from configfs-tsm, a quote and a credential activation from the vTPM.

:class:`HardwareSvsmCollector` takes part in the broker's challenge (the KBS client's
``auth_params`` and ``takes_challenge``, :mod:`veritee.attester.kbs_client`):

1. ``auth_params()``: the vTPM's EK and AK ``TPMT_PUBLIC`` (``tpm2_readpublic -f tpmt``) as
   ``{"ek-public", "ak-public"}`` (hex) for the ``auth`` request. The EK is the TCG default
   RSA EK (template L-1, the one coconut-svsm's vTPM creates and its manifest names), made
   again from the endorsement seed with ``tpm2_createek -G rsa`` unless ``ek`` names one;
   the AK is a provisioned restricted signing key (``ak``, as the ``tpm`` collector's);
2. called with the 64 report-data bytes (the SVSM nonce) and the broker's
   :class:`~veritee.attester.kbs_client.Challenge`:

   a. the SVSM's report: a configfs-tsm entry with ``service_provider`` = ``svsm``,
      ``service_guid`` = the vTPM's (:data:`~veritee.tee.svsm.manifest.VTPM_GUID`) and
      ``service_manifest_version`` = 0 (Linux ``drivers/virt/coco/tsm.c``; ``sev-guest``
      sends SVSM_ATTEST_SINGLE_SERVICE): ``outblob`` is the VMPL 0 report over
      SHA-512(nonce ‖ manifest), ``manifestblob`` the EK's TPMT_PUBLIC, which must be the
      EK of step 1;
   b. the certificates: ``auxblob`` when the SVSM returned some; else (``certificates``) a
      plain report from the guest OS, whose ``auxblob`` is the host's certificate table
      with the VCEK (its report, at VMPL 3, is discarded), as go-tpm-tools'
      ``cmd/attest_svsm.go`` fetches them;
   c. the quote, by the ``tpm`` room's collector (:class:`HardwareTpmCollector`), its
      qualifying data SHA-256 of the nonce (:func:`~veritee.tee.svsm.verify.quote_nonce`);
   d. the activation: ``tpm2_activatecredential`` of the challenge's ``credential`` and
      ``secret`` with the AK and the EK, in a PolicySecret(endorsement) session (the EK's
      authPolicy); a challenge without ``credential`` (a broker without the SVSM hook) gives
      evidence without ``activation``, which verifies at best as undecided.

It returns the JSON evidence of :mod:`veritee.tee.svsm.evidence`. The emulated collector is
:mod:`veritee.attester.svsm.emulated`.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.snp import SnpCollected
from veritee.attester.tpm import (
    DEFAULT_AK,
    DEFAULT_SELECTION,
    DEFAULT_TIMEOUT,
    DEVICES,
    HardwareTpmCollector,
    TpmCollected,
    _Runner,
)
from veritee.attester.tsm import DEFAULT_TSM_ROOT, TsmFs, TsmReport, tsm_report
from veritee.errors import MisuseError
from veritee.tee.snp.evidence import TSM_PROVIDER
from veritee.tee.snp.layout import REPORT_SIZE
from veritee.tee.svsm import credential, manifest
from veritee.tee.svsm.verify import quote_nonce
from veritee.tee.tpm.structures import name_of

if TYPE_CHECKING:
    from veritee.attester.kbs_client import Challenge

#: What configfs-tsm is told for the vTPM's manifest, version 0 (the EK's TPMT_PUBLIC).
SVSM_OPTIONS: Final = (("service_provider", "svsm"), ("service_guid", str(manifest.VTPM_GUID)),
                       ("service_manifest_version", "0"))
TOOLS: Final = ("tpm2_createek", "tpm2_readpublic", "tpm2_quote", "tpm2_startauthsession",
                "tpm2_policysecret", "tpm2_activatecredential", "tpm2_flushcontext")
#: The VMPL of the plain report that fetches the certificates: 3 is at or above any guest
#: OS's own (the firmware refuses a report for a VMPL below the requester's), as go-tpm-tools
#: asks.
PLAIN_VMPL: Final = 3
#: REPORT_DATA in the SNP report (SEV-SNP ABI Table 23).
_REPORT_DATA: Final = slice(0x50, 0x90)


@dataclass(frozen=True)
class VtpmKeys:
    """The vTPM's keys as the collector names them to tpm2-tools, and their public areas."""

    ek: str
    ek_public: bytes
    ak: str
    ak_public: bytes

    def auth_params(self) -> dict[str, str]:
        return {"ek-public": self.ek_public.hex(), "ak-public": self.ak_public.hex()}


@dataclass
class HardwareSvsmCollector:
    """Collects ``snp-svsm-vtpm`` evidence from this guest (see the module docstring)."""

    takes_challenge: ClassVar[bool] = True

    tsm_root: Path = DEFAULT_TSM_ROOT
    fs: TsmFs | None = None
    ak: str = DEFAULT_AK
    """The AK: a persistent handle (``0x81......``) or a saved context file."""
    ek: str | None = None
    """The EK: a handle or a saved context; None: the TCG default RSA EK, made again with
    ``tpm2_createek -G rsa`` (the SVSM vTPM's EK template)."""
    tcti: str | None = None
    """As :attr:`HardwareTpmCollector.tcti` (None: ``TPM2TOOLS_TCTI``, else the device)."""
    selection: str = DEFAULT_SELECTION
    certificates: bool = True
    """When the SVSM returns no certificates, take the host's from a plain report."""
    path: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    devices: Sequence[Path] = DEVICES
    timeout: float = DEFAULT_TIMEOUT

    # -- the KBS client's interface --

    def auth_params(self) -> dict[str, str]:
        """``{"ek-public", "ak-public"}``: the vTPM's keys for the ``auth`` request.

        Raises:
            CollectorUnavailableError: tpm2-tools or the TPM is absent.
            CollectorError: a tpm2-tools command failed (e.g. no AK at :attr:`ak`).
        """
        with self._tpm2() as run:
            return self._keys(run).auth_params()

    def __call__(self, report_data: bytes, challenge: Challenge | None = None) -> dict[str, Any]:
        """The JSON evidence over the 64-byte SVSM nonce ``report_data``, answering
        ``challenge`` (None: no activation).

        Raises:
            MisuseError: ``report_data`` is not 64 bytes.
            CollectorUnavailableError: configfs-tsm offers no SVSM service provider here, or
                tpm2-tools or the TPM is absent.
            CollectorError: a report, a tpm2-tools command or the activation failed, the
                manifest names another EK than the vTPM's, or the challenge is malformed or
                made for another AK.
        """
        if len(report_data) != manifest.NONCE_SIZE:
            raise MisuseError(f"report data is {len(report_data)} bytes; the SVSM nonce is "
                              f"exactly {manifest.NONCE_SIZE}")
        svsm = self._svsm_report(report_data)
        snp = SnpCollected(svsm.outblob[:REPORT_SIZE], self._cert_table(svsm), "configfs-tsm")
        with self._tpm2() as run:
            keys = self._keys(run)
            _check_manifest(svsm.manifestblob, keys.ek_public, self.ek)
            quote = self._quote_collector().collect(quote_nonce(report_data))
            document = _evidence(snp, svsm.manifestblob, report_data, keys.ak_public, quote)
            blobs = _challenge_blobs(challenge, keys.ak_public)
            if blobs is not None and challenge is not None:
                secret = self._activate(run, keys, *blobs)
                document["activation"] = {"nonce": challenge.nonce, "credential": _b64(secret)}
        return document

    # -- configfs-tsm --

    def _svsm_report(self, nonce: bytes) -> TsmReport:
        try:
            report = tsm_report(nonce, root=self.tsm_root, fs=self.fs, provider=TSM_PROVIDER,
                                options=SVSM_OPTIONS, manifest=True)
        except CollectorUnavailableError as exc:
            raise CollectorUnavailableError(
                f"no SVSM attestation through configfs-tsm: {exc.detail}; it needs an SEV-SNP "
                "guest running above VMPL 0 under an SVSM and Linux 6.11+ (service_provider, "
                "service_guid, service_manifest_version, manifestblob)") from exc
        if len(report.outblob) < REPORT_SIZE:
            raise CollectorError(f"the SVSM returned {len(report.outblob)} bytes; an SNP "
                                 f"report is {REPORT_SIZE}")
        expected = manifest.expected_report_data(nonce, report.manifestblob)
        if report.outblob[_REPORT_DATA] != expected:
            raise CollectorError(
                f"the SVSM's report has REPORT_DATA {report.outblob[_REPORT_DATA].hex()}, not "
                f"SHA-512(nonce || manifest) = {expected.hex()} (another writer's report?)")
        return report

    def _cert_table(self, svsm: TsmReport) -> bytes:
        """The SVSM's certificates, else the host's through a plain report (step b)."""
        if svsm.auxblob or not self.certificates:
            return svsm.auxblob
        plain = tsm_report(bytes(manifest.NONCE_SIZE), root=self.tsm_root, fs=self.fs,
                           provider=TSM_PROVIDER, privlevel=PLAIN_VMPL)
        return plain.auxblob

    # -- the vTPM --

    def _quote_collector(self) -> HardwareTpmCollector:
        return HardwareTpmCollector(
            ak=_object(self.ak), tcti=self.tcti, selection=self.selection, eventlog=None,
            path=self.path, environ=self.environ, devices=self.devices, timeout=self.timeout)

    @contextmanager
    def _tpm2(self) -> Iterator[_Runner]:
        """tpm2-tools in a fresh work directory, with the TCTI the quote uses."""
        found = {tool: shutil.which(tool, path=self.path) for tool in TOOLS}
        missing = [tool for tool, where in found.items() if where is None]
        if missing:
            raise CollectorUnavailableError(
                f"tpm2-tools is not installed ({', '.join(missing)} not found on "
                f"{'PATH' if self.path is None else self.path!r}): install the tpm2-tools "
                "package (apt-get install tpm2-tools)")
        tools = {tool: where for tool, where in found.items() if where is not None}
        env = {**self.environ, "TPM2TOOLS_TCTI": self._quote_collector()._tcti()}
        with tempfile.TemporaryDirectory(prefix="veritee-svsm-") as work:
            yield _Runner(tools, env, Path(work), self.timeout)

    def _keys(self, run: _Runner) -> VtpmKeys:
        ek = _object(self.ek) if self.ek is not None else "ek.ctx"
        if self.ek is None:
            run.run("tpm2_createek", "-c", ek, "-G", "rsa", "-u", "ek.pub")
        ek_public = run.output("tpm2_readpublic", "-c", ek, "-f", "tpmt", "-o", "ek.tpmt",
                               name="ek.tpmt")
        ak = _object(self.ak)
        ak_public = run.output("tpm2_readpublic", "-c", ak, "-f", "tpmt", "-o", "ak.tpmt",
                               name="ak.tpmt", what=self._quote_collector()._ak_hint)
        return VtpmKeys(ek, ek_public, ak, ak_public)

    def _activate(self, run: _Runner, keys: VtpmKeys, id_object: bytes,
                  encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential(AK, EK) in a PolicySecret(TPM_RH_ENDORSEMENT) session.

        The session lives across three commands, so they run without the flush that follows
        every other command (``tpm2_flushcontext -s`` would end it); it is flushed after.
        """
        (run.work / "cred.blob").write_bytes(credential.tpm2_tools_blob(id_object,
                                                                         encrypted_secret))
        held = _Runner({k: v for k, v in run.tools.items() if k != "tpm2_flushcontext"},
                       run.env, run.work, run.timeout)
        try:
            held.run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
            held.run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
            held.run("tpm2_activatecredential", "-c", keys.ak, "-C", keys.ek, "-i",
                     "cred.blob", "-o", "activated", "-P", "session:session.ctx")
        finally:
            with suppress(CollectorError):  # absent when the session was never started
                run.run("tpm2_flushcontext", "session.ctx")
        return run.read("activated")


def _evidence(snp: SnpCollected, shown: bytes, nonce: bytes, ak_public: bytes,
              quote: TpmCollected) -> dict[str, Any]:
    """The JSON evidence of :mod:`veritee.tee.svsm.evidence`, but for the activation."""
    return {
        "sev_snp_attestation": snp.evidence(),
        "vtpm_service_manifest": _b64(shown),
        "vtpm_service_manifest_version": 0,
        "nonce": nonce.hex(),
        "ak_public": _b64(ak_public),
        "tpm_quote": {"message": _b64(quote.attest), "signature": _b64(quote.signature),
                      "pcrs": [value.hex() for value in quote.pcrs]},
    }


def _check_manifest(shown: bytes, ek_public: bytes, ek: str | None) -> None:
    """The SVSM's manifest must name the EK the credential is activated with."""
    if shown != ek_public:
        raise CollectorError(
            f"the SVSM's vTPM manifest is the TPMT_PUBLIC {shown.hex()[:48]}…, the EK "
            f"{ek or '(tpm2_createek -G rsa)'} is {ek_public.hex()[:48]}…: name the EK the "
            "SVSM's manifest names with ek=")


def _challenge_blobs(challenge: Challenge | None,
                     ak_public: bytes) -> tuple[bytes, bytes] | None:
    """``(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)`` of the challenge, or None when it holds
    no credential.

    Raises:
        CollectorError: a blob is not base64, or the credential is for another AK.
    """
    extra = challenge.extra_params if challenge is not None else None
    if not isinstance(extra, Mapping) or extra.get("credential") is None:
        return None
    ours = name_of(ak_public).hex()
    if str(extra.get("ak-name", ours)).lower() != ours:
        raise CollectorError(f"the challenge's credential is for the AK named "
                             f"{extra.get('ak-name')}, this collector's AK is {ours}")
    return _unb64(extra, "credential"), _unb64(extra, "secret")


def _unb64(extra: Mapping[str, Any], name: str) -> bytes:
    value = extra.get(name)
    try:
        if not isinstance(value, str):
            raise TypeError(name)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise CollectorError(f"the challenge's extra-params {name!r} is not base64 "
                             "text") from exc


def _object(reference: str) -> str:
    """A handle as given; a context file as an absolute path (tpm2-tools run elsewhere)."""
    if reference.lower().startswith("0x"):
        return reference
    return str(Path(reference).resolve())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


__all__ = ["SVSM_OPTIONS", "HardwareSvsmCollector", "VtpmKeys"]
