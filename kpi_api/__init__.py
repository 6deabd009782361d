"""The KPI API: cached KPI time series, reports and the internal dashboard."""
