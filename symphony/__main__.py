"""``python -m symphony``: the ``symphony`` operator CLI."""
import sys

from symphony.console.commands.main import main

sys.exit(main())
