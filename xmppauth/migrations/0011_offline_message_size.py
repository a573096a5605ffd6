"""Stored messages record their size in UTF-8 bytes (XMPP_MAX_OFFLINE_BYTES, and sending them a few at a
time); those stored before are measured once here."""

from django.db import migrations, models


def measure(apps, schema_editor):  # type: ignore[no-untyped-def]
    OfflineMessage = apps.get_model("xmppauth", "OfflineMessage")
    for row in OfflineMessage.objects.only("id", "stanza").iterator():
        OfflineMessage.objects.filter(pk=row.pk).update(size=len(row.stanza.encode()))


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0010_pep_item_size")]

    operations = [
        migrations.AddField(
            model_name="offlinemessage",
            name="size",
            field=models.PositiveIntegerField(
                default=0, help_text="The stanza's UTF-8 bytes (for the quota)."
            ),
        ),
        migrations.RunPython(measure, migrations.RunPython.noop),
    ]
