import sys

from pmrun.run import main

sys.exit(main())
