"""MLflow: runs, plots and the registry, system metrics, the UI, and the winner's export (docs/DESIGN.md, "search/")."""
