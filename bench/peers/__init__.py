"""The peers' side of the throughput case: task definitions and worker entry points.

Each module is imported by that system's own worker processes (``rq worker``, ``celery worker``,
``dramatiq``, ``huey_consumer``) and by the harness to pre-fill its queue.
"""
