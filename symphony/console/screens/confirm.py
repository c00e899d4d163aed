"""A yes/no question: Enter (or y) confirms, Escape (or n) cancels."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("enter,y", "confirm", "Confirm", show=True),
        Binding("escape,n", "cancel", "Go back", show=True),
    ]

    def __init__(self, title: str, body: str, *, confirm: str = "Confirm", back: str = "Go back",
                 danger: bool = False):
        """``confirm`` and ``back`` label the two buttons: say what each does (never two "Cancel")."""
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm
        self.back_label = back
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.body, classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yes = Button(f"{self.confirm_label} (Enter)", variant="error" if self.danger else "primary", id="yes")
                no = Button(f"{self.back_label} (Esc)", id="no")
                yes.can_focus = no.can_focus = False  # Enter always confirms, whatever has focus
                yield yes
                yield no

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
