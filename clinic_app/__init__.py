"""Django project and app for guideline-grounded clinical decision support."""
