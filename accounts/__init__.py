"""Accounts: users named by their JID localpart, their passwords and SCRAM keys."""
