"""PEP items record their size in UTF-8 bytes, payload, item id and publisher together (xmppauth/pep.py
item_size; the per-account quota, XMPP_PEP_MAX_BYTES); the items stored before are measured once here."""

from django.db import migrations, models


def measure(apps, schema_editor):  # type: ignore[no-untyped-def]
    PepItem = apps.get_model("xmppauth", "PepItem")
    for item in PepItem.objects.only("id", "payload", "item_id", "publisher").iterator():
        size = len(item.payload.encode()) + len(item.item_id.encode()) + len(item.publisher.encode())
        PepItem.objects.filter(pk=item.pk).update(size=size)


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0009_roster_version_last_presence")]

    operations = [
        migrations.AddField(
            model_name="pepitem",
            name="size",
            field=models.PositiveIntegerField(
                default=0, help_text="Payload, id and publisher in UTF-8 bytes (the quota)."
            ),
        ),
        migrations.RunPython(measure, migrations.RunPython.noop),
    ]
