"""`python -m killb_broker_client headers ...`: the same as the `killb-broker` command."""

import sys

from killb_broker_client.cli import main

sys.exit(main())
