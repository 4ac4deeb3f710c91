"""Empirical privacy and security audits of privfl's DP, SecAgg+ and CKKS claims.

- :mod:`privfl.audit.stats`: Clopper-Pearson epsilon lower bounds from distinguishing tests.
- :mod:`privfl.audit.dp`, :mod:`privfl.audit.dp_checks`, :mod:`privfl.audit.planted`: DP
  distinguishing experiments, the DP checks, and deliberately broken mechanisms.
- :mod:`privfl.audit.secagg`: SecAgg+ transcript statistics and malicious-server attacks.
- :mod:`privfl.audit.ckks`: CKKS parameter security and key-role checks.
- :mod:`privfl.audit.suite`, :mod:`privfl.audit.report`: running everything and the Markdown report
  (``privfl audit [--quick] [--out DIR]``).
"""
