"""Back up the catalog and the photos while the service serves, or restore them.

The ``face-search-backup`` command (service/commands/backup.py), run from the repository.
"""

import sys

from service.commands.backup import main

if __name__ == "__main__":
    sys.exit(main())
