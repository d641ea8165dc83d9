"""Add a folder tree of photos to a key's gallery, without HTTP.

The ``face-search-import-folder`` command (service/commands/import_folder.py), run from the repository.
"""

import sys

from service.commands.import_folder import main

if __name__ == "__main__":
    sys.exit(main())
