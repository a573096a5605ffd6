"""Archived messages record their size in UTF-8 bytes (the archive's quota per account,
XMPP_ARCHIVE_MAX_BYTES); those archived before are measured here, in one statement: an archive can hold
millions of rows, too many to measure one at a time."""

from django.db import migrations, models

MEASURE = {
    "postgresql": "UPDATE {table} SET size = octet_length(stanza)",
    "sqlite": "UPDATE {table} SET size = length(CAST(stanza AS BLOB))",
}


def measure(apps, schema_editor):  # type: ignore[no-untyped-def]
    ArchivedMessage = apps.get_model("xmppauth", "ArchivedMessage")
    sql = MEASURE.get(schema_editor.connection.vendor)
    if sql is not None:
        schema_editor.execute(sql.format(table=schema_editor.quote_name(ArchivedMessage._meta.db_table)))
        return
    for row in ArchivedMessage.objects.only("id", "stanza").iterator():  # another database: slower, the same
        ArchivedMessage.objects.filter(pk=row.pk).update(size=len(row.stanza.encode()))


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0011_offline_message_size")]

    operations = [
        migrations.AddField(
            model_name="archivedmessage",
            name="size",
            field=models.PositiveIntegerField(
                default=0, help_text="The stanza's UTF-8 bytes (for the quota)."
            ),
        ),
        migrations.RunPython(measure, migrations.RunPython.noop),
    ]
