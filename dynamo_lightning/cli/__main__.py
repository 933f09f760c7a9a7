"""``python -m dynamo_lightning.cli ...`` runs the ``dynamo`` command."""

import sys

from dynamo_lightning.cli.main import main

sys.exit(main())
