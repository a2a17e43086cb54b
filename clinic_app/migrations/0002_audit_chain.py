"""Turn the audit log into a hash chain and make the database refuse changes to it.

Existing events are numbered in id order and chained; then the append-only triggers go in.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from clinic_app.audit.chain import GENESIS_HASH, event_hash, timestamp_text
from clinic_app.audit.triggers import triggers_install, triggers_remove


def chain_existing(apps: Any, schema_editor: Any) -> None:
    event_model = apps.get_model("clinic_app", "AuditEvent")
    head_model = apps.get_model("clinic_app", "AuditHead")
    prev_hash, seq, last_at = GENESIS_HASH, 0, None
    for event in event_model.objects.order_by("id").iterator():
        seq += 1
        if last_at is not None and event.at < last_at:
            event.at = last_at  # the chain's timestamps never go backwards
        fields = {
            "seq": seq,
            "at": timestamp_text(event.at),
            "actor": event.actor,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "outcome": event.outcome,
            "source_ip": event.source_ip,
            "details": event.details,
        }
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = event_hash(prev_hash, fields)
        last_at = event.at
        event.save(update_fields=["seq", "at", "prev_hash", "hash"])
    head_model.objects.create(pk=1, seq=seq, hash=prev_hash, at=last_at)


def install(apps: Any, schema_editor: Any) -> None:
    triggers_install(schema_editor)


def remove(apps: Any, schema_editor: Any) -> None:
    triggers_remove(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("clinic_app", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.PositiveBigIntegerField(default=0)),
                ("hash", models.CharField(max_length=64)),
                ("at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.PositiveBigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("at", models.CharField(max_length=32)),
                ("signature", models.CharField(max_length=64)),
            ],
            options={"ordering": ["seq"]},
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="at",
            field=models.DateTimeField(db_index=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.CharField(blank=True, db_index=True, max_length=150),
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(unique=True),
        ),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["-seq"]}),
        migrations.RunPython(install, remove),
    ]
