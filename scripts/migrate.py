"""Copy an embedded data directory into cluster mode.

The ``face-search-migrate`` command (service/commands/migrate.py), run from the repository.
"""

import sys

from service.commands.migrate import main

if __name__ == "__main__":
    sys.exit(main())
