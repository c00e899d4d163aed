"""The main screen's panels. Each has a draw half that diffs a snapshot into its widget."""
from .activity import ActivityPanel
from .header import Connection, HeaderBar
from .queues import QueuesPanel
from .scalesets import ScaleSetsPanel
from .workers import WorkersPanel

__all__ = ["ActivityPanel", "Connection", "HeaderBar", "QueuesPanel", "ScaleSetsPanel", "WorkersPanel"]
