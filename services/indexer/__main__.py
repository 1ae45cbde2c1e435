"""`python -m services.indexer [build|update|verify|rollback|watch]` (default: update), for the k8s CronJob."""

import sys

from services.cli import main

args = sys.argv[1:] or ["update"]
sys.exit(main(["index", *args]))
