"""``python -m zarrcrop.cli``: same as the ``zarrcrop`` console command."""

import sys

from zarrcrop.cli import main

if __name__ == "__main__":
    sys.exit(main())
