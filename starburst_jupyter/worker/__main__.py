import sys

from starburst_jupyter.worker.runner import main

sys.exit(main())
