"""Rebuild galleries' indexes from the catalog while the service serves them.

The ``face-search-rebuild-index`` command (service/commands/rebuild_index.py), run from the repository.
"""

import sys

from service.commands.rebuild_index import main

if __name__ == "__main__":
    sys.exit(main())
