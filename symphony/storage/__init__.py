"""Outputs on object stores, behind the ``storage`` extra (``pip install 'redis-symphony[storage]'``).

The engine and the workers reach these stores only through the engine's ``OutputStore`` interface
and ``open_store``, which finds them through the ``symphony.stores`` entry points: ``az`` and
``abfs`` (Azure Blob Storage, :mod:`.azure_blob`), and ``*`` (any other scheme fsspec knows,
:mod:`.fsspec_store`: ``s3://`` with s3fs, ``gs://`` with gcsfs). This package depends on the
engine's public API, never the reverse (an import-linter contract holds both to it).
"""
