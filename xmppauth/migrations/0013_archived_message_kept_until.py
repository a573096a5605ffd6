"""An archived message the quota must not remove for a while: a stored copy was cleared at a Bind2 login,
and the client is to fetch it from the archive (XEP-0386 §2.3)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("xmppauth", "0012_archived_message_size")]

    operations = [
        migrations.AddField(
            model_name="archivedmessage",
            name="kept_until",
            field=models.DateTimeField(
                blank=True,
                help_text="Not removed by the quota before then: a client is to fetch it.",
                null=True,
            ),
        ),
    ]
