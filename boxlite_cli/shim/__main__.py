import sys

from boxlite_cli.shim.main import main

sys.exit(main(sys.argv))
