import sys

from sparseg.cli import main

sys.exit(main())
