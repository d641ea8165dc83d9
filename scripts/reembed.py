"""Re-embed a key's gallery with another model pack.

The ``face-search-reembed`` command (service/commands/reembed.py), run from the repository.
"""

import sys

from service.commands.reembed import main

if __name__ == "__main__":
    sys.exit(main())
