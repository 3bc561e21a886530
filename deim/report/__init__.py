"""Writing figures and tables with provenance, and running the paper notebooks with papermill."""
