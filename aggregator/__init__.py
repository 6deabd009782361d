"""Consumer-group workers that turn the event streams into KPIs, exactly once per stream entry."""
