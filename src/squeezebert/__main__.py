import sys

from squeezebert.cli import main

sys.exit(main())
