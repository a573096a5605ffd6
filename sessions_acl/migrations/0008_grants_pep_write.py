"""Grants made from the ``full`` and ``admin`` roles gain ``pep.write``, the scope that PEP changes moved to
(they had come with ``presence``): a client with a password login, or an app password made as ``full``,
goes on publishing its avatar and keys. Grants of other roles, or of chosen scopes, keep exactly those."""

from django.db import migrations

ROLES = ("full", "admin")
SCOPE = "pep.write"


def add(apps, schema_editor):  # type: ignore[no-untyped-def]
    Grant = apps.get_model("sessions_acl", "Grant")
    for grant in Grant.objects.filter(role__in=ROLES).iterator():
        if SCOPE not in grant.scopes:
            grant.scopes = sorted([*grant.scopes, SCOPE])
            grant.save(update_fields=["scopes"])


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    Grant = apps.get_model("sessions_acl", "Grant")
    for grant in Grant.objects.filter(role__in=ROLES).iterator():
        if SCOPE in grant.scopes:
            grant.scopes = [scope for scope in grant.scopes if scope != SCOPE]
            grant.save(update_fields=["scopes"])


class Migration(migrations.Migration):
    dependencies = [("sessions_acl", "0007_revocation_committed")]
    operations = [migrations.RunPython(add, remove)]
