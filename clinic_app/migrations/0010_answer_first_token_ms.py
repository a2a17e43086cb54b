# Quality page (issue 18): each answer keeps its time to first token.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("clinic_app", "0009_question_threads"),
    ]

    operations = [
        migrations.AddField(
            model_name="answer",
            name="first_token_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
