# Conversations (issue 16): a question may follow up one of the user's answers.

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F


def threads_of_existing(apps, schema_editor):
    """Every question asked before threads existed is the first (and only) turn of its own."""
    Question = apps.get_model("clinic_app", "Question")
    Question.objects.filter(thread__isnull=True).update(thread_id=F("id"))


class Migration(migrations.Migration):

    dependencies = [
        ("clinic_app", "0008_evaluation_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="question",
            name="thread",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="thread_questions",
                to="clinic_app.question",
            ),
        ),
        migrations.AddField(
            model_name="question",
            name="follow_up_of",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="follow_ups",
                to="clinic_app.answer",
            ),
        ),
        migrations.AddField(
            model_name="question",
            name="turn",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.RunPython(threads_of_existing, migrations.RunPython.noop),
    ]
