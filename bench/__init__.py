"""Symphony's benchmark harness: ``python -m bench`` (see ``docs/benchmarks.md``).

Every case runs each system in turn against one Redis this harness starts itself, with the same
no-op task (increment one Redis counter) and the same number of worker processes, and reports
medians over rounds and ratios measured side by side within each round.
"""
