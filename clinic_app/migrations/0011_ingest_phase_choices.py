# Upload job phases as choices (IngestPhase); no change to the column.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("clinic_app", "0010_answer_first_token_ms"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ingestjob",
            name="phase",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("parsing", "Parsing"),
                    ("indexing", "Indexing"),
                    ("complete", "Complete"),
                    ("failed", "Failed"),
                ],
                default="queued",
                max_length=40,
            ),
        ),
    ]
