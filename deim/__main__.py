import sys

from deim.cli import main

sys.exit(main())
