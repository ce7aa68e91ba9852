"""The service layer: jobs, templates, files (storage, retention) and the dispatcher."""
