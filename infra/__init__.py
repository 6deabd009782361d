"""Shared runtime pieces of the three services and their commands that are not part of the data
contract (that is ``schemas``): Redis connections (connection.py), bearer tokens (tokens.py), the
HTTP pieces both services share (service.py: error body, health, server time), the HTTP limits of
both servers (http_limits.py), and progress reporting for long operator commands (progress.py)."""
