"""Parts of Symphony behind the ``azure`` extra (``pip install 'redis-symphony[azure]'``).

They use only the engine's public API (``symphony.engine``) and the engine never imports them
(import-linter contracts in pyproject.toml).
"""
