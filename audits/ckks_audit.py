"""Audit of privfl's CKKS: parameter security, server key material, wrong-key decryption.

Usage: python audits/ckks_audit.py [--quick] [--out DIR] [--seed N]. Writes a Markdown report with its
figures (and plots) into DIR and exits 1 if a check fails. `privfl audit` runs every family at once.
"""

import sys

from privfl.audit.suite import script_main

if __name__ == "__main__":
    sys.exit(script_main("CKKS"))
