"""The panels of the console's screens. Each follows the panel protocol of ``base.py``: its data
is prepared in the poll thread, and its draw half diffs that data into its widget."""
from .activity import ActivityPanel
from .header import Connection, HeaderBar
from .queues import QueuesPanel
from .scalesets import ScaleSetsPanel
from .sessions import SessionsPanel
from .workers import WorkersPanel

__all__ = ["ActivityPanel", "Connection", "HeaderBar", "QueuesPanel", "ScaleSetsPanel", "SessionsPanel",
           "WorkersPanel"]
