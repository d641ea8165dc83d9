"""Download an official InsightFace model pack.

The ``face-search-fetch-models`` command (service/commands/fetch_models.py), run from the repository.
"""

import sys

from service.commands.fetch_models import main

if __name__ == "__main__":
    sys.exit(main())
