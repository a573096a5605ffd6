"""``manage.py adduser``."""
