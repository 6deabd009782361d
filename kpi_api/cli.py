"""``analytics-kpi-api``: serve the KPI API on ``$PORT``."""

from __future__ import annotations

import logging

import uvicorn

from infra.http_limits import uvicorn_options
from kpi_api.app import create_app
from schemas.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level=settings.log_level.lower(), access_log=False,
        **uvicorn_options(settings),  # header/body deadlines, header cap, connection cap
    )


if __name__ == "__main__":
    main()
