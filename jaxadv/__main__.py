"""``python -m jaxadv ...`` is the ``jaxadv`` command."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
