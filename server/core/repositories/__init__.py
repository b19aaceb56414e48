"""SQL, one module per aggregate; `server.core.db.Database` is all of them on one engine."""
