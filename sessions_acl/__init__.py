"""Sessions and access control: clients, grants, app passwords, FAST tokens, revocation."""
