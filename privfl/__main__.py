"""``python -m privfl`` runs the ``privfl`` command."""

import sys

from privfl.cli import main

sys.exit(main())
