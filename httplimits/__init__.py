"""HTTP limits at the connection level, shared by the collector and the KPI API (see protocol.py)."""
