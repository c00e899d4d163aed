"""Screens and dialogs of the console."""
from .confirm import ConfirmScreen
from .detail import DetailScreen
from .help import KEYS, HelpScreen
from .initialize import InitializeScreen
from .repair import RepairScreen
from .worker import WorkerScreen

__all__ = ["ConfirmScreen", "DetailScreen", "HelpScreen", "InitializeScreen", "KEYS", "RepairScreen", "WorkerScreen"]
