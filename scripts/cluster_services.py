"""Start or stop a local cluster's PostgreSQL and Milvus.

The ``face-search-cluster-services`` command (service/commands/cluster_services.py), run from the repository.
"""

import sys

from service.commands.cluster_services import main

if __name__ == "__main__":
    sys.exit(main())
