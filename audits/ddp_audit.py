"""Audit of privfl's distributed DP: an epsilon lower bound from what the server unmasks.

Usage: python audits/ddp_audit.py [--quick] [--out DIR] [--seed N]. Writes a Markdown report with its
figures (and plots) into DIR and exits 1 if a check fails. `privfl audit` runs every family at once.
"""

import sys

from privfl.audit.suite import script_main

if __name__ == "__main__":
    sys.exit(script_main("Distributed DP"))
