"""``python -m rewind.cli`` (as ``python -m rewind``)."""
import sys

from . import main

sys.exit(main())
