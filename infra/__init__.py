"""Shared runtime pieces of the three services and their commands that are not part of the data
contract (that is ``schemas``): here, progress reporting for long operator commands."""
