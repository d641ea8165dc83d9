"""Group a key's faces into persons now, in this process.

The ``face-search-persons`` command (service/commands/persons.py), run from the repository.
"""

import sys

from service.commands.persons import main

if __name__ == "__main__":
    sys.exit(main())
