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
from privfl.errors import ConfigError, MessageError, PrivflError
from privfl.he import (
    PRESETS,
    CkksClientMod,
    CkksKeys,
    CkksParams,
    ClientCipher,
    EncryptedModel,
    EncryptedSum,
    HEFedAvg,
    PackLayout,
    _proto,
    decrypt_model,
)
from privfl.he.committee import Committee, CommitteeConfig, combine, committee_budget, lagrange_at_zero
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


def release_check(params: CkksParams) -> Check:
    """Li and Micciancio's key recovery: succeeds on exact decryptions (control), fails on released values."""
    keys = CkksKeys.generate(params)
    cipher = ClientCipher(keys)
    rng = np.random.default_rng(3)
    blobs = [cipher.encrypt(rng.normal(size=params.slots))[0] for _ in range(3)]
    true_key = secret_key_ntt(keys)
    exact = [cipher._decrypt_exact([b], params.slots) for b in blobs[:2]]
    released = [cipher.decrypt([b], params.slots, summands=1) for b in blobs[:2]]
    control = np.array_equal(recover_secret_key(params, blobs[:2], exact), true_key)
    candidate = recover_secret_key(params, blobs[:2], released)
    recovered = np.array_equal(candidate, true_key)
    other = cipher._decrypt_exact([blobs[2]], params.slots)
    garbage = float(np.max(np.abs(decrypt_with(params, candidate, blobs[2]) - other)))
    step = release_step(params, 1)
    on_grid = all(np.array_equal(np.rint(r / step) * step, r) for r in released)
    ok = control and not recovered and garbage > 1e3 and on_grid
    return Check(
        FAMILY,
        "released CKKS decryptions do not give the secret key away (Li and Micciancio 2021)",
        Status.PASS if ok else Status.FAIL,
        f"Two ciphertexts of {params.slots} Gaussian values under fresh {params.name} keys; the key-recovery "
        "attack (one 2x2 system per pair of conjugate NTT slots) is run on their exact decryptions (control: "
        "it must recover the key) and on the values ClientCipher.decrypt releases (it must not); the candidate "
        "key then decrypts a third ciphertext.",
        (
            ("key recovered from exact decryptions (control)", "yes" if control else "NO"),
            ("key recovered from released values", "YES" if recovered else "no"),
            ("third ciphertext under the candidate key: max error", f"{garbage:.3g}"),
            ("release grid (one summand)", f"2^{np.log2(step):.0f} = {step:.3g}"),
        ),
        ("released values on the grid" if on_grid else "released values OFF the grid",),
    )


def _seal_lagrange(r, index: int, signers: Sequence[int]) -> np.ndarray:
    return np.array([[v] for v in lagrange_at_zero(index, signers, r.moduli)], dtype=np.uint64)


def reconstruct_key(config: CommitteeConfig, shares: dict[int, np.ndarray]) -> np.ndarray:
    """Lagrange interpolation at 0 of data-level key shares ``{member index: (k, N) NTT share}``."""
    r = ring(config.params)
    key = np.zeros((r.k, r.n), dtype=np.uint64)
    for i, share in shares.items():
        key = r.add(key, r.mul(share, _seal_lagrange(r, i, sorted(shares))))
    return key


def recover_share(config: CommitteeConfig, blob: bytes, partial: np.ndarray, index: int, signers) -> np.ndarray:
    """The server's attack on one partial decryption: ``d = c1 * lambda * sk + E``, so ``d / (c1 * lambda)``.

    Exact when ``E`` is zero (no smudging); otherwise ``sk + E / (c1 * lambda)``, noise.
    """
    r = ring(config.params)
    c1 = _seal_polys(config.params, blob)[1]
    return r.mul(partial, r.inverse(r.mul(c1, _seal_lagrange(r, index, signers))))


def committee_check(config: CommitteeConfig) -> Check:
    """t of c members decrypt, fewer are refused, a dropout is survived, and smudging stops share recovery."""
    committee = Committee.generate(config)
    t, c, params = config.threshold, config.members, config.params
    rng = np.random.default_rng(4)
    values = [rng.normal(size=params.slots) for _ in range(2)]
    cipher = ClientCipher(committee.keys)
    uploads = [cipher.encrypt(v) for v in values]
    total = EncryptedSum(committee.keys, params.slots)
    for upload in uploads:
        total.add(upload)
    cts, expected = total.serialize(), values[0] + values[1]
    findings: dict[str, bool] = {}
    step = config.release_step(2)
    for signers in (tuple(range(1, t + 1)), tuple(range(c - t + 1, c + 1))):  # the second: member 1 dropped
        partials = {i: committee.members[i - 1].partial_decrypt(cts, signers) for i in signers}
        error = float(np.max(np.abs(combine(config, cts, partials, params.slots, 2) - expected)))
        findings[f"members {list(signers)} decrypt within the release grid ({error:.2e})"] = error <= step
    try:
        committee.members[0].partial_decrypt(cts, tuple(range(1, t)))
        findings[f"a member refuses a signer set smaller than t = {t}"] = False
    except MessageError:
        findings[f"a member refuses a signer set smaller than t = {t}"] = True
    # The server colluding with members 1..t-1 attacks member t's partial decryption.
    signers = tuple(range(1, t + 1))
    r = ring(params)
    shares = {i: committee.members[i - 1]._share[: r.k] for i in range(1, t)}
    truth = committee.members[t - 1]._share[: r.k]
    outcomes = {}
    for label, bits in (("unsmudged (control)", 0), ("smudged", None)):
        member = committee.members[t - 1]
        partial = (
            member._partial_decrypt(cts[:1], signers, bits) if bits == 0 else member.partial_decrypt(cts[:1], signers)
        )
        stolen = recover_share(config, cts[0], partial[0], t, signers)
        key = reconstruct_key(config, {**shares, t: stolen})
        err = float(np.max(np.abs(decrypt_with(params, key, uploads[0][0]) - values[0])))
        outcomes[label] = (np.array_equal(stolen, truth), err)
    findings["without smudging the attack recovers the share and the key (control)"] = (
        outcomes["unsmudged (control)"][0] and outcomes["unsmudged (control)"][1] < 1e-6
    )
    findings["with smudging the recovered 'share' is noise and the key decrypts nothing"] = (
        not outcomes["smudged"][0] and outcomes["smudged"][1] > 1e3
    )
    budget = committee_budget(params, c, config.statistical_security, config.max_clients)
    return Check(
        FAMILY,
        f"committee mode: {t} of {c} members decrypt, fewer cannot, smudging hides the key shares",
        Status.PASS if all(findings.values()) else Status.FAIL,
        f"A fresh committee ({params.name}, c = {c}, t = {t}); two uploads under the joint key are summed and "
        "decrypted by two signer sets; a member is asked to sign with fewer than t; the server, colluding with "
        "t - 1 members, divides a partial decryption by c1 * lambda to steal the last share, with and without "
        "smudging.",
        (
            ("smudging width", f"2^{config.smudging_bits} ({config.statistical_security}-bit statistical security)"),
            ("error bound of a sum of max_clients uploads", f"2^{budget['error_bits']:.1f}"),
            ("slot blur from smudging (std)", f"2^{budget['blur_bits']:.1f}"),
            ("release grid (2 summands)", f"{step:.3g}"),
        ),
        tuple(f"{'yes' if ok else 'NO'}: {name}" for name, ok in findings.items()),
    )


def ckks_checks(settings: AuditSettings, out_dir: Path | None) -> list[Check]:
    """Every CKKS check (no plots; ``settings`` and ``out_dir`` are unused)."""
    del settings, out_dir
    default = PRESETS["fl-8192"]
    return [
        parameter_check(),
        server_key_check(default),
        wrong_key_check(default),
        transcript_check(default),
        release_check(default),
        committee_check(CommitteeConfig()),
    ]
