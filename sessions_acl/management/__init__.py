"""Management commands of the sessions and access control app."""
