"""``python -m jaxadv ...`` is the ``jaxadv`` command."""
import sys

from .app.cli import main

sys.exit(main())
