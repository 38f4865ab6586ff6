"""What the study concludes: metrics, the test confirmation, learning curves, the report, cells side by side (docs/DESIGN.md, "search/")."""
