"""The study and its storage: the plan and the worker loop, the stored state, the set-up lock, retries (docs/DESIGN.md, "search/")."""
