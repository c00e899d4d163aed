"""The ``symphony`` command-line verbs (no Textual here: the CLI starts fast)."""
