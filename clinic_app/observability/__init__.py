"""What operators and reviewers watch: Prometheus metrics, readiness checks, the quality page's
trends and evaluation comparisons, and their views."""
