"""No module of clinic_app imports another in a circle (scripts/import_graph.py)."""

from __future__ import annotations

from pathlib import Path

from scripts.import_graph import cycles, graph, modules


def test_clinic_app_has_no_import_cycles() -> None:
    edges = graph()
    assert len(edges) > 40
    assert cycles(edges) == []


def test_a_cycle_is_found_even_through_an_import_inside_a_function(tmp_path: Path) -> None:
    package = tmp_path / "clinic_app"
    (package / "answers").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "answers" / "__init__.py").write_text("")
    (package / "answers" / "services.py").write_text(
        "def start():\n    from clinic_app.answers import tasks\n"
    )
    (package / "answers" / "tasks.py").write_text("from clinic_app.answers.services import start\n")
    (package / "models.py").write_text("from clinic_app.answers import services\n")
    edges = graph(modules(package))
    assert edges["clinic_app.models"] == {"clinic_app.answers.services"}
    assert cycles(edges) == [["clinic_app.answers.services", "clinic_app.answers.tasks"]]
