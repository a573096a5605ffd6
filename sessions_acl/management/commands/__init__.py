"""``manage.py apppassword``, ``listsessions``, ``revoke``, ``setscopes``."""
