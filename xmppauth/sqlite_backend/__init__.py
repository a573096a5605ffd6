"""Django's SQLite backend with a cheaper placeholder conversion (see ``base``)."""
