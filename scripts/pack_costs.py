"""What a model pack costs on this machine: time per photo and per face, memory, bytes per stored face.

  python scripts/pack_costs.py [--pack buffalo_s,yunet_sface,buffalo_s_edgeface] [--photos 300] [--reembed]

The measurements are service/harness/pack_costs.py's (also run by ``scripts/evaluate.py --costs``).
"""

import sys

from service.harness.pack_costs import main

if __name__ == "__main__":
    sys.exit(main())
