import sys

from nmrladder.cli import main

sys.exit(main())
