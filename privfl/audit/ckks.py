"""The CKKS audit family: parameter security, key material, wrong keys, safe release and the committee.

The parameter check compares with its own copy of the Homomorphic Encryption Standard
table (Albrecht et al. 2018, Table 1: classical 128-bit security, ternary secret) and
with the context TenSEAL actually builds, rather than trusting the presets' own
validation. The key checks go through the public API (:class:`privfl.he.CkksKeys`,
:class:`privfl.he.ClientCipher`, :class:`privfl.he.HEFedAvg`) and TenSEAL directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privfl.audit.config import AuditSettings
from privfl.audit.report import Check, Status
from privfl.core.context import Context
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message
from privfl.core.mods import compose
from privfl.errors import ConfigError, PrivflError
from privfl.he import (
    PRESETS,
    CkksClientMod,
    CkksKeys,
    CkksParams,
    ClientCipher,
    EncryptedModel,
    HEFedAvg,
    PackLayout,
    _proto,
    decrypt_model,
)
from privfl.he.release import release_step
from privfl.he.ring import ring
from privfl.server.transport import InProcessClients, drive

FAMILY = "CKKS"

HE_STANDARD_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
"""Largest log2 q for 128-bit classical security, ternary secrets (HE Standard 2018, Table 1)."""


def _tenseal_context(keys: CkksKeys):
    import tenseal

    return tenseal.context_from(keys.context)


def _seal_polys(params: CkksParams, blob: bytes) -> np.ndarray:
    """The ``(2, k, N)`` NTT polynomials of one serialised TenSEAL vector."""
    _sizes, cts, _scale = _proto.read_ckks_vector_proto(blob)
    r = ring(params)
    return r.read(r.load(cts[0]))


def secret_key_ntt(keys: CkksKeys) -> np.ndarray:
    """The ``(k, N)`` NTT form of the secret key at the data level (to check a recovered key against)."""
    return ring(keys.params).load_secret_key(keys.secret_key_bytes())


def recover_secret_key(params: CkksParams, blobs: Sequence[bytes], released: Sequence[np.ndarray]) -> np.ndarray:
    """Li and Micciancio's key recovery (EUROCRYPT 2021, Section 4) from two ciphertexts and their decryptions.

    A decryption ``z`` of ``(c0, c1)`` gives the real parts of the slots of
    ``m = c0 + c1*s`` over the scale. Re-encoding them at twice the scale yields the
    integer polynomial ``u = m + m(X^-1)`` exactly when ``z`` is exact. In NTT form,
    ``X -> X^-1`` swaps the evaluations at a root and at its inverse, so each pair of
    conjugate NTT slots ``(i, j)`` gives one linear equation per ciphertext in
    ``s_i, s_j``: ``u_i - c0_i - c0_j = c1_i s_i + c1_j s_j``. Two ciphertexts give a
    2x2 system per pair, solved modulo each prime. Returns the candidate key (NTT form).
    """
    r = ring(params)
    x = np.zeros((1, r.k, r.n), dtype=np.uint64)
    x[0, :, 1] = 1
    roots = r.to_ntt(x)[0][0]  # NTT(X): the evaluation points, in SEAL's order
    q0 = r.moduli[0]
    where = {int(w): i for i, w in enumerate(roots)}
    pair = np.array([where[pow(int(w), q0 - 2, q0)] for w in roots])
    rows = []
    for blob, values in zip(blobs, released, strict=True):
        c = _seal_polys(params, blob)
        u = r.encode(values, 2 * params.scale)
        rows.append((r.sub(r.sub(u, c[0]), c[0][:, pair]), c[1], c[1][:, pair]))
    (ra, a11, a12), (rb, a21, a22) = rows
    det = r.sub(r.mul(a11, a22), r.mul(a12, a21))
    return r.mul(r.sub(r.mul(a22, ra), r.mul(a12, rb)), r.inverse(det))


def decrypt_with(params: CkksParams, key_ntt: np.ndarray, blob: bytes) -> np.ndarray:
    """The slot values of a serialised vector decrypted with a ``(k, N)`` NTT-form key (e.g. a recovered one)."""
    r = ring(params)
    c = _seal_polys(params, blob)
    return r.decode(r.add(c[0], r.mul(c[1], key_ntt)), params.scale, params.slots)


def parameter_check() -> Check:
    """Every preset, as declared and as built, against the HE Standard table; an unsafe set is refused."""
    evidence = []
    ok = True
    for params in PRESETS.values():
        keys = CkksKeys.generate(params)
        key_data = _tenseal_context(keys).seal_context().data.key_context_data()
        built_n = key_data.parms().poly_modulus_degree()
        built_bits = key_data.total_coeff_modulus_bit_count()
        bound = HE_STANDARD_128.get(built_n, 0)
        declared = sum(params.coeff_mod_bit_sizes)
        safe = built_n == params.poly_modulus_degree and built_bits <= bound and declared <= bound
        ok &= safe
        evidence.append(
            f"{params.name}: N={built_n}, coefficient modulus {built_bits} bits as built "
            f"({declared} declared, primes {list(params.coeff_mod_bit_sizes)}), HE Standard bound {bound}: "
            f"{'within' if safe else 'EXCEEDED'}"
        )
    over = (8192, (60, 60, 60, 60), 40)
    try:
        CkksParams("audit-over-bound", *over)
        refused = "accepted (unsafe)"
        ok = False
    except ConfigError as exc:
        refused = f"refused with ConfigError: {exc}"
    evidence.append(f"custom set N={over[0]}, primes {list(over[1])} ({sum(over[1])} bits > 218): {refused}")
    return Check(
        FAMILY,
        "every CKKS preset meets 128-bit security (HE Standard) and unsafe sets are refused",
        Status.PASS if ok else Status.FAIL,
        "Each preset's ring dimension and total coefficient-modulus bits, read back from the SEAL context "
        "TenSEAL builds, are compared with the auditor's copy of the HE Standard's 128-bit table.",
        (("presets checked", str(len(PRESETS))),),
        tuple(evidence),
    )


def server_key_check(params: CkksParams) -> Check:
    """The server's context holds no secret key, cannot decrypt, and the server strategy refuses a secret one."""
    keys = CkksKeys.generate(params)
    server = keys.public()
    ctx = _tenseal_context(server)
    findings = {
        "CkksKeys.has_secret is False": not server.has_secret,
        "TenSEAL context is not private (no secret key)": not ctx.is_private(),
        "no Galois or relinearisation keys": not (ctx.has_galois_keys() or ctx.has_relin_keys()),
        "secret-key bytes absent from the serialised server context": keys.secret_key_bytes() not in server.context,
    }
    blob = ClientCipher(keys).encrypt(np.linspace(-1.0, 1.0, 16))[0]
    import tenseal

    try:
        tenseal.ckks_vector_from(ctx, blob).decrypt()
        findings["decryption with the server context fails"] = False
        decrypt_note = "decryption with the server context SUCCEEDED"
    except (ValueError, RuntimeError) as exc:
        findings["decryption with the server context fails"] = True
        decrypt_note = f"decryption with the server context raised {type(exc).__name__}: {exc}"
    try:
        HEFedAvg(keys)
        findings["HEFedAvg refuses the secret context"] = False
    except ConfigError:
        findings["HEFedAvg refuses the secret context"] = True
    evidence = [f"{'yes' if v else 'NO'}: {k}" for k, v in findings.items()]
    evidence.append(decrypt_note)
    return Check(
        FAMILY,
        "the server-side context holds no secret key and cannot decrypt",
        Status.PASS if all(findings.values()) else Status.FAIL,
        f"Keys for {params.name}: the server's context (CkksKeys.public()) is inspected through TenSEAL and "
        "used to decrypt a fresh ciphertext.",
        (("server context bytes", f"{len(server.context):,}"), ("secret context bytes", f"{len(keys.context):,}")),
        tuple(evidence),
    )


def wrong_key_check(params: CkksParams) -> Check:
    """A ciphertext under key A, decrypted with key B: the protocol refuses it, raw decryption is garbage."""
    rng = np.random.default_rng(0)
    plain = rng.uniform(-1.0, 1.0, size=params.slots)
    a, b = CkksKeys.generate(params), CkksKeys.generate(params)
    blobs = ClientCipher(a).encrypt(plain)
    right = ClientCipher(a)._decrypt_exact(blobs, plain.size)
    wrong = ClientCipher(b)._decrypt_exact(blobs, plain.size)
    right_error = float(np.max(np.abs(right - plain)))
    wrong_error = float(np.max(np.abs(wrong - plain)))
    corr = float(np.corrcoef(plain, wrong)[0, 1]) if np.all(np.isfinite(wrong)) and np.std(wrong) > 0 else 0.0
    # The protocol path: a model encrypted under A reaching a B client is refused before decryption.
    model = EncryptedModel(PackLayout.of({"w": plain}), a.key_id, 1.0, tuple(blobs)).to_arrays()
    try:
        decrypt_model(model, ClientCipher(b))
        refusal = "NOT refused"
        refused = False
    except PrivflError as exc:
        refusal = f"{type(exc).__name__}: {exc}"
        refused = True
    garbage = wrong_error > 0.5 and abs(corr) < 0.1
    ok = right_error < 1e-6 and garbage and refused
    return Check(
        FAMILY,
        "a ciphertext cannot be read with a wrong key",
        Status.PASS if ok else Status.FAIL,
        f"{plain.size} uniform values in [-1, 1] encrypted under key A ({params.name}) and decrypted with an "
        "independent key B of the same parameters: the raw decryption must be unrelated to the plaintext "
        "(large error, |correlation| < 0.1), the client path must refuse with a typed error, and key A "
        "itself must decrypt correctly (control).",
        (
            ("max error, right key (control)", f"{right_error:.2e}"),
            ("max error, wrong key", f"{wrong_error:.3g}"),
            ("correlation of wrong-key decryption with plaintext", f"{corr:.4f}"),
        ),
        (f"client path with key B: {refusal}",),
    )


def transcript_check(params: CkksParams) -> Check:
    """One HEFedAvg round: everything the server receives is ciphertext; no plaintext value appears in it."""
    keys = CkksKeys.generate(params)
    rng = np.random.default_rng(1)
    nodes = (1, 2, 3)
    updates = {n: rng.normal(size=6) for n in nodes}

    def train(message: Message, context: Context) -> Message:
        return message.reply(arrays={"w": message.arrays["w"] + updates[context.node_id]}, metrics={"num_examples": 3})

    clients = InProcessClients(compose(train, [CkksClientMod(keys)]))
    received: list[Message] = []

    def deliver(outbox: list[Message]):
        for reply in clients.deliver(outbox):
            received.append(reply)
            yield reply

    spec = RoundSpec(0, 1, nodes, {"w": np.zeros(6)}, {}, SamplingInfo(len(nodes), 1.0, True))
    outcome = drive(HEFedAvg(keys.public()).fit_round(spec), deliver)
    arrays = [(m.metadata.src_node, name, arr) for m in received for name, arr in m.arrays.items()]
    float_arrays = [f"node {n}: {name} ({arr.dtype})" for n, name, arr in arrays if arr.dtype.kind == "f"]
    payload = b"".join(arr.tobytes() for _, _, arr in arrays)
    leaked = [
        f"node {n} value {v:.6g}"
        for n, u in updates.items()
        for v in 3 * u  # clients send num_examples * parameters
        if np.float64(v).tobytes() in payload or np.float32(v).tobytes() in payload
    ]
    mean = decrypt_model(outcome.parameters, ClientCipher(keys))["w"]
    error = float(np.max(np.abs(mean - np.mean(list(updates.values()), axis=0))))
    weight = 3 * len(nodes)
    tolerance = release_step(params, weight) / 2 / weight + 1e-9  # the released model sits on the release grid
    ok = not float_arrays and not leaked and error <= tolerance
    return Check(
        FAMILY,
        "the server's transcript of an encrypted round holds no plaintext update",
        Status.PASS if ok else Status.FAIL,
        f"One HEFedAvg round over {len(nodes)} clients through the wire codec; every array the server received "
        "is inspected for float dtypes and for the float64/float32 bytes of any plaintext value sent; the "
        "decrypted average is the control.",
        (
            ("messages received by the server", str(len(received))),
            ("float arrays received", str(len(float_arrays))),
            ("plaintext values found in the transcript bytes", str(len(leaked))),
            ("max error of the decrypted average (control)", f"{error:.2e} (release grid: {tolerance:.2e})"),
        ),
        tuple(float_arrays[:5] + leaked[:5]),
    )


def ckks_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """Every CKKS check (no plots; ``settings`` and ``out_dir`` are unused)."""
    del settings, out_dir
    default = PRESETS["fl-8192"]
    return [parameter_check(), server_key_check(default), wrong_key_check(default), transcript_check(default)]
