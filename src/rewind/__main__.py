"""``python -m rewind`` (and ``torchrun -m rewind``): the command line."""
import sys

from .cli import main

sys.exit(main())
