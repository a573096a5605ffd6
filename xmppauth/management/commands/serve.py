"""`manage.py serve`: HTTP + WebSocket (Daphne) and XMPP c2s (STARTTLS, direct TLS) in one process and loop.

Steps: apply pending migrations (SQLite only; other databases must be migrated by the operator), make sure a
TLS certificate exists, load ASGI_APPLICATION, then start Daphne on the public HTTP listener (``--http``) and
the admin's own (``--admin-http``, XMPP_ADMIN_HTTP: xmppauth/listeners.py), both in one Daphne server; the c2s
listeners are opened from Daphne's ready callback, i.e. on the same Twisted asyncio reactor, just before it
starts running. Ctrl-C or SIGTERM
stop the reactor, which closes the XMPP connections and cancels the applications.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from xmppauth.listeners import (
    AdminHTTP,
    Endpoint,
    admin_http_setting,
    admin_prefix,
    format_endpoint,
    parse_admin_http,
    parse_endpoint,
)
from xmppauth.transport.tls import CertificateError, ServerTLS, ensure_certificate

FILES_SPARE = 256  # files the process needs beside its connections: the database, logs, certificates


class Command(BaseCommand):
    help = "Serve HTTP/WebSocket and XMPP client connections (STARTTLS and direct TLS) in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--http",
            type=parse_endpoint,
            default=("127.0.0.1", 8000),
            metavar="HOST:PORT",
            help="HTTP and WebSocket (portal, /xmpp-websocket); default 127.0.0.1:8000; 'off': none",
        )
        parser.add_argument(
            "--admin-http",
            type=parse_admin_http,
            default=None,
            metavar="HOST:PORT|public|off",
            help="the admin site's own listener: everything --http serves, plus /admin/ (404 elsewhere); "
            "'public': the admin on --http too; 'off': no admin over HTTP; default XMPP_ADMIN_HTTP "
            "(127.0.0.1:8001)",
        )
        parser.add_argument(
            "--c2s",
            type=parse_endpoint,
            default=("127.0.0.1", 5222),
            metavar="HOST:PORT",
            help="XMPP clients with STARTTLS; default 127.0.0.1:5222; 'off' disables",
        )
        parser.add_argument(
            "--c2s-tls",
            type=parse_endpoint,
            default=("127.0.0.1", 5223),
            metavar="HOST:PORT",
            help="XMPP clients with direct TLS (ALPN xmpp-client); default 127.0.0.1:5223; 'off' disables",
        )
        parser.add_argument(
            "--no-migrate",
            action="store_true",
            help="do not apply pending migrations at start-up (SQLite) or check for them (other databases)",
        )

    _c2s_factories: list[Any] = []

    def handle(self, *args: Any, **options: Any) -> None:
        http: Endpoint | None = options["http"]
        c2s: Endpoint | None = options["c2s"]
        c2s_tls: Endpoint | None = options["c2s_tls"]
        verbosity: int = options["verbosity"]
        admin: AdminHTTP = options["admin_http"] or self._admin_http_setting()
        admin_listener = admin if isinstance(admin, tuple) else None
        if http is None and c2s is None and c2s_tls is None and admin_listener is None:
            raise CommandError("every listener is off; nothing to serve")
        if http is not None and admin_listener == http and http[1] != 0:
            raise CommandError(
                f"--http and the admin listener (--admin-http or XMPP_ADMIN_HTTP) are both "
                f"{format_endpoint(*http)}: give the admin a port of its own, or 'public' to serve it on "
                "--http"
            )

        self._file_limit()
        if not options["no_migrate"]:
            self._migrate(verbosity)
        tls = self._tls()
        application = self._application()
        self._close_stale_sessions()
        from xmppauth import archive

        archive.load_prefs()  # XEP-0441: what each account archives, known before anything is routed

        import daphne.server  # noqa: F401 - installs Twisted's asyncio reactor (done already when daphne is an app)
        from twisted.internet import reactor as default_reactor

        reactor: Any = default_reactor

        def start_control() -> None:
            from xmppauth import tasks
            from xmppauth.cluster import CLUSTER
            from xmppauth.control import CONTROL

            CONTROL.start()
            tasks.start(CLUSTER.start(), name="cluster: joining the other processes")

        reactor.callWhenRunning(start_control)
        reactor.addSystemEventTrigger("before", "shutdown", self._stop_serving)

        def start_c2s() -> None:
            self._listen_c2s(application, tls, c2s, c2s_tls)
            _freeze_what_start_made()
            self.stdout.write(f"domain: {settings.XMPP_DOMAIN}")
            self.stdout.write("Quit with CONTROL-C.")
            self.stdout.flush()

        if http is None and admin_listener is None:
            start_c2s()
            asyncio.set_event_loop(reactor._asyncioEventloop)
            reactor.run()
            return

        from daphne.access import AccessLogGenerator
        from daphne.endpoints import build_endpoint_description_strings

        from xmppauth.listeners import serve_admin_on

        server: Any = None
        admin_path = admin_prefix() or "/"

        def ready() -> None:
            addresses = list(server.listening_addresses)  # in the order of the endpoints
            base = None
            if http is not None:
                base = format_endpoint(*addresses.pop(0))
                self.stdout.write(
                    f"HTTP/WebSocket on http://{base} (XMPP over WebSocket at ws://{base}/xmpp-websocket)"
                )
            if admin_listener is not None:
                host, port = addresses.pop(0)
                serve_admin_on((host, port))  # the address it got: port 0 and host names resolved
                self.stdout.write(f"Admin on http://{format_endpoint(host, port)}{admin_path}")
            elif admin == "public" and base is not None:
                serve_admin_on(admin)
                self.stdout.write(f"Admin on http://{base}{admin_path} (on the public listener: 'public')")
            else:
                serve_admin_on(admin)
                why = "--http is off" if base is None else "'off'"
                self.stdout.write(f"Admin: not served over HTTP ({why})")
            start_c2s()

        from xmppauth.transport.http_guard import guarded_server
        from xmppauth.transport.limits import process_limits

        server = guarded_server(
            process_limits(),
            settings.XMPP_HTTP_REQUEST_TIMEOUT,
            application=application,
            endpoints=[
                description
                for endpoint in (http, admin_listener)
                if endpoint is not None
                for description in build_endpoint_description_strings(host=endpoint[0], port=endpoint[1])
            ],
            signal_handlers=True,
            action_logger=AccessLogGenerator(sys.stdout) if verbosity >= 2 else None,
            http_timeout=None,
            websocket_timeout=-1,  # XMPP streams last for days; the stream layer keeps its own timeouts
            websocket_connect_timeout=20,
            ping_interval=20,
            ping_timeout=30,
            application_close_timeout=10,
            root_path=getattr(settings, "FORCE_SCRIPT_NAME", None) or "",
            verbosity=verbosity,
            ready_callable=ready,
        )
        server.run()
        if server.abort_start:
            admin_failed = self._failed_on(server, admin_listener) and not self._failed_on(server, http)
            if http is None or admin_failed:
                assert admin_listener is not None
                raise CommandError(
                    f"cannot listen for the admin site on {format_endpoint(*admin_listener)} (see above); "
                    "is another server running? Choose another address with --admin-http or XMPP_ADMIN_HTTP, "
                    "or 'public' / 'off'"
                )
            raise CommandError(
                f"cannot listen for HTTP on {format_endpoint(*http)} (see above); "
                "is another server running? Choose another address with --http, or 'off'"
            )

    @staticmethod
    def _admin_http_setting() -> AdminHTTP:
        try:
            return admin_http_setting()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None

    @staticmethod
    def _failed_on(server: Any, endpoint: Endpoint | None) -> bool:
        """Whether Daphne could not listen on ``endpoint`` (its CannotListenError names the address)."""
        if endpoint is None:
            return False
        host = endpoint[0].strip("[]")
        return any(
            getattr(exc, "port", None) == endpoint[1] and getattr(exc, "interface", host) == host
            for exc in server.listen_failures
        )

    def _stop_serving(self) -> Any:
        """Before the reactor drops every connection: end the streams and sessions, storing what they had
        accepted (xmppauth/shutdown.py), then close the XMPP listeners' connections; the reactor waits for
        the Deferred."""
        from twisted.internet.defer import Deferred

        from xmppauth.shutdown import stop_serving
        from xmppauth.transport.limits import process_limits

        async def stop() -> None:
            await stop_serving(process_limits(), settings.XMPP_SHUTDOWN_SECONDS)
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(factory.shutdown().asFuture(loop) for factory in self._c2s_factories))

        return Deferred.fromFuture(asyncio.ensure_future(stop()))

    def _file_limit(self) -> None:
        """Each connection is a file: the process may open as many as the system lets it, and says so when
        that is fewer than XMPP_MAX_CONNECTIONS (a process out of files stops accepting anyone)."""
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
        wanted = settings.XMPP_MAX_CONNECTIONS + FILES_SPARE
        if soft != resource.RLIM_INFINITY and soft < wanted:
            self.stderr.write(
                f"warning: this process may open {soft} files and XMPP_MAX_CONNECTIONS is "
                f"{settings.XMPP_MAX_CONNECTIONS}: connections beyond some {max(0, soft - FILES_SPARE)} "
                "will fail with no clear refusal; raise the file limit (ulimit -n, LimitNOFILE=) or lower "
                "XMPP_MAX_CONNECTIONS"
            )

    def _migrate(self, verbosity: int) -> None:
        from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

        from xmppauth.dbsetup import pending_migrations

        connection = connections[DEFAULT_DB_ALIAS]
        sqlite = connection.vendor == "sqlite"
        if sqlite:
            name = str(connection.settings_dict["NAME"])
            if name and name != ":memory:" and not name.startswith("file:"):
                Path(name).parent.mkdir(parents=True, exist_ok=True)
        try:
            pending = pending_migrations()
            if pending and sqlite:
                if verbosity >= 1:
                    self.stdout.write(f"Applying {pending} pending migration(s) to the SQLite database")
                call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))
            if not pending:
                # the database cache's table (CACHE_URL=database, or several processes without Redis), also
                # when the cache was configured after the migrations ran; nothing for another cache
                call_command("createcachetable", verbosity=0)
        except DatabaseError as exc:
            raise CommandError(f"cannot check the database migrations: {exc}") from exc
        finally:
            connections.close_all()
        if pending and not sqlite:
            raise CommandError(
                f"the database has {pending} unapplied migration(s); run `python manage.py migrate` first "
                "(serve applies migrations by itself only on SQLite), or start with --no-migrate"
            )

    def _close_stale_sessions(self) -> None:
        from django.db import DatabaseError, connections

        from sessions_acl.records import close_node_sessions

        try:
            closed = close_node_sessions(settings.XMPP_NODE)
        except DatabaseError as exc:
            raise CommandError(f"cannot read the session records: {exc}") from exc
        finally:
            connections.close_all()
        if closed:
            self.stdout.write(
                f"{closed} session(s) of node {settings.XMPP_NODE!r} left open by the last run: ended"
            )

    def _tls(self) -> ServerTLS:
        try:
            ensure_certificate(settings.XMPP_DOMAIN, settings.XMPP_TLS_CERT, settings.XMPP_TLS_KEY)
            return ServerTLS(settings.XMPP_TLS_CERT, settings.XMPP_TLS_KEY)
        except (CertificateError, OSError) as exc:
            raise CommandError(f"TLS certificate: {exc}") from exc

    def _application(self) -> Any:
        from channels.routing import get_default_application

        try:
            return get_default_application()
        except ImproperlyConfigured as exc:
            cause = f" ({exc.__context__})" if exc.__context__ else ""
            raise CommandError(f"cannot load ASGI_APPLICATION: {exc}{cause}") from exc

    def _listen_c2s(
        self, application: Any, tls: ServerTLS, c2s: Endpoint | None, c2s_tls: Endpoint | None
    ) -> None:
        from twisted.internet.error import CannotListenError

        from xmppauth.consumer import refusal_document
        from xmppauth.transport.limits import process_limits
        from xmppauth.transport.tcp import listen_c2s

        try:
            ports = listen_c2s(
                application,
                starttls_endpoint=c2s,
                directtls_endpoint=c2s_tls,
                tls=tls,
                handshake_timeout=settings.XMPP_PREAUTH_TIMEOUT,
                limits=process_limits(),
                read_rate=settings.XMPP_READ_BYTES_PER_SECOND,
                read_burst=settings.XMPP_READ_BURST_BYTES,
                max_outgoing_bytes=settings.XMPP_MAX_OUTGOING_BYTES,
                refusal_document=refusal_document,
                close_on_shutdown=False,  # _stop_serving ends the sessions first, then closes them
            )
        except CannotListenError as exc:
            reason = exc.socketError.strerror if exc.socketError is not None else str(exc)
            where = format_endpoint(exc.interface or "*", exc.port)
            raise CommandError(
                f"cannot listen for XMPP clients on {where}: {reason}; is another server running? "
                "Choose another address with --c2s / --c2s-tls, or 'off'"
            ) from None
        self._c2s_factories = [port.factory for port in ports]
        addresses = [port.getHost() for port in ports]
        if c2s is not None:
            address = addresses.pop(0)
            self.stdout.write(f"XMPP c2s STARTTLS on {format_endpoint(address.host, address.port)}")
        if c2s_tls is not None:
            address = addresses.pop(0)
            where = format_endpoint(address.host, address.port)
            self.stdout.write(f"XMPP c2s direct TLS on {where} (ALPN xmpp-client)")


def _freeze_what_start_made() -> None:
    """Leave the objects made at start (modules, Django's settings, URL patterns, ~110,000 of them) out of the
    collector's full collections: each stopped the event loop, and every user's stanzas, for ~70 ms, seen
    during a guessing run; with them frozen a full collection takes ~2 ms (``bench/gc_pause.py``,
    docs/performance.md). They live as long as the process anyway."""
    import gc

    gc.collect()
    gc.freeze()
