import sys

from mimetic.cli import main

sys.exit(main())
