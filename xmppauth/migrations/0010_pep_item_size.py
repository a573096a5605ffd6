"""PEP items record their payload's size in UTF-8 bytes (the per-account quota, XMPP_PEP_MAX_BYTES); the
items stored before are measured once here."""

from django.db import migrations, models


def measure(apps, schema_editor):  # type: ignore[no-untyped-def]
    PepItem = apps.get_model("xmppauth", "PepItem")
    for item in PepItem.objects.only("id", "payload").iterator():
        PepItem.objects.filter(pk=item.pk).update(size=len(item.payload.encode()))


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0009_roster_version_last_presence")]

    operations = [
        migrations.AddField(
            model_name="pepitem",
            name="size",
            field=models.PositiveIntegerField(
                default=0, help_text="The payload's UTF-8 bytes (for the quota)."
            ),
        ),
        migrations.RunPython(measure, migrations.RunPython.noop),
    ]
