"""The cache table, for deployments whose cache is the database (several processes without Redis).

``createcachetable`` makes the table of every cache configured with Django's database backend and does
nothing otherwise; the table holds the guessing limits' counts (accounts/guessing.py).
"""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps: Any, schema_editor: Any) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0002_roster")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
