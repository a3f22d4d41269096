"""``termtem deliver``: the notification job in a process of its own, beside ``termtem serve``.

The server delivers notifications itself by default. Under a heavy write load the deliveries compete
with the writes for the server process's time; run them here instead (and start the server with
``TERMTEM_SUBSCRIPTION_DELIVERY=off``): the same job, sharing the store (the lease makes sure only
one process delivers), waking on new events by looking at the store every
``TERMTEM_SUBSCRIPTION_POLL`` seconds (0.1).
"""

from __future__ import annotations

import typer

from fhir_server.config import Settings, default_store_url


def register(app: typer.Typer) -> None:
    @app.command()
    def deliver(
        store: str = typer.Option(None, help="Store URL (the server's; default as termtem serve)."),
        public_url: str = typer.Option(
            "",
            "--public-url",
            envvar="TERMTEM_PUBLIC_BASE_URL",
            help="The FHIR base URL notifications refer to (the server's public base URL).",
        ),
    ) -> None:
        """Deliver subscription notifications and announce overdue referrals until stopped."""
        import asyncio
        import logging
        import signal

        from fhir_server.storage import create_store
        from fhir_server.subscriptions.runner import Background

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        settings = Settings(store_url=store or default_store_url(), public_base_url=public_url.rstrip("/"))
        base = settings.public_base_url or "http://127.0.0.1:8080/fhir"

        async def run() -> None:
            db = create_store(settings)
            await db.open()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            job = Background(db, settings, base)
            job.start()
            typer.echo(f"delivering notifications from {settings.store_url} (stop with Ctrl+C)")
            try:
                await stop.wait()
            finally:
                await job.stop()
                await db.close()

        asyncio.run(run())
