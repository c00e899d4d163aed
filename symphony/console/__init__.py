"""Symphony's operator front ends: the ``symphony`` CLI (console.commands) and the Textual
console ``symphony-tui``. Importing this package does not import Textual."""
