"""Manage API keys, quotas and the secret photo links are signed with.

The ``face-search-keys`` command (service/commands/keys.py), run from the repository.
"""

import sys

from service.commands.keys import main

if __name__ == "__main__":
    sys.exit(main())
