import sys

from tokensift.cli import main

sys.exit(main())
