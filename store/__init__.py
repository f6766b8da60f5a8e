"""Data access: every SQL statement ePay runs, in modules by table family.

Each function takes a pool or a connection and returns typed rows (dataclasses), never
``asyncpg.Record``, so that callers read fields, not string keys. Workflows never import
this package (workflows/ruff.toml); activities, the API and the commands do.
"""
