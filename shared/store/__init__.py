"""The results store: notes, results, one row per code, failures, in a relational database.

SQLAlchemy 2 over PostgreSQL (psycopg 3) in production or a SQLite file (the embedded
default): same schema, same code path, chosen by URL (``ICDCODER_STORE__URL``, ``--store``).
The schema is created and upgraded with Alembic (``icdcoder db upgrade``).

- :mod:`~icdcoder.shared.store.schema`: the tables;
- :mod:`~icdcoder.shared.store.engine`: engines and sessions from a URL;
- :mod:`~icdcoder.shared.store.repository`: what the rest of the program does with them;
- :mod:`~icdcoder.shared.store.migrate`: Alembic, driven from the package.
"""
