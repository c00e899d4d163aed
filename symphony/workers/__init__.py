"""Symphony's headless workers: a supervisor running N worker processes that pull tasks."""
