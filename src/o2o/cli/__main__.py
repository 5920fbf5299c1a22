import sys

from o2o.cli.main import main

sys.exit(main())
