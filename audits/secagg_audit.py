"""Audit of privfl's SecAgg+: transcript statistics and malicious-server attacks.

Usage: python audits/secagg_audit.py [--quick] [--out DIR] [--seed N]. Writes a Markdown report with its
figures (and plots) into DIR and exits 1 if a check fails. `privfl audit` runs every family at once.
"""

import sys

from privfl.audit.suite import script_main

if __name__ == "__main__":
    sys.exit(script_main("SecAgg+"))
