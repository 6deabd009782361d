"""The collector: a thin Starlette service that validates, pseudonymises and appends events."""
