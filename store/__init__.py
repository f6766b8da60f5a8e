"""Data access: every query of ePay's tables, in modules by table family (the health
checks and the stuck-payments gauge aside: docs/design.md, "The layers").

Each function takes a pool or a connection and returns typed rows (dataclasses), never
``asyncpg.Record``, so that callers read fields, not string keys. Workflows never import
this package (workflows/ruff.toml); activities, the API and the commands do.
"""
