"""`python -m boxlite_cli`: the `boxlite` command."""

import sys

from boxlite_cli.entry import main

sys.exit(main())
