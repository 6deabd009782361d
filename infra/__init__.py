"""Shared runtime pieces of the three services and their commands that are not part of the data
contract (that is ``schemas``): progress reporting for long operator commands (progress.py), the
HTTP limits of both servers (http_limits.py)."""
