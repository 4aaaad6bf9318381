"""``jaga-hub``: run the hub and administer stations and operators.

    jaga-hub [--config PATH] serve [--host H] [--port P] [--port-file F]
    jaga-hub [--config PATH] stations list | import FILE | token ID
    jaga-hub [--config PATH] operators add NAME [--password-stdin] | remove NAME | revoke NAME

The config defaults to ``$JAGA_CONFIG``, else ``./config.toml``. Admin commands write the
backend's store directly, so they work whether or not a hub is running.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hub.core.registry import parse_registry, registry_to_csv
from hub.errors import ConfigError, JagaError, RegistryError
from hub.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where used: admin commands need neither the server nor the app
    import uvicorn
    from starlette.applications import Starlette

    from hub.backends.base import CredentialStore

T = TypeVar("T")

WS_MAX_SIZE = 256 * 1024 + 1024  # the thumbnail limit plus framing; larger frames close with 1009
# uvicorn's own X-Forwarded-* handling stays off: by default it believes 127.0.0.1 (and
# $FORWARDED_ALLOW_IPS) and rewrites the client before the app sees the direct peer. The app
# applies `hub.trusted_proxies` itself (hub/routes/proxies.py), so test hubs behave the same
# (tests/kit.py starts its servers with the same flag).


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        return int(args.handler(settings, args) or 0)
    except ModuleNotFoundError as exc:
        # An office PC's install (requirements/station.txt) has the agent's packages only.
        print(f"error: jaga-hub needs the hub's packages ({exc.name} is missing): install "
              "requirements/hub.txt (docs/operations.md, 'Installing: the locks')", file=sys.stderr)
        return 2
    except RegistryError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except JagaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaga-hub", description="Jaga live-session hub")
    parser.add_argument("--config", default=None, help="config file (default: $JAGA_CONFIG or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--port-file", help="write the port actually bound here (useful with --port 0)")
    serve.set_defaults(handler=cmd_serve)

    stations = commands.add_parser("stations", help="the station registry and tokens")
    station_commands = stations.add_subparsers(dest="action", required=True)
    station_commands.add_parser("list", help="list the registry").set_defaults(handler=cmd_stations_list)
    importer = station_commands.add_parser("import", help="validate a CSV and make it the registry")
    importer.add_argument("file")
    importer.set_defaults(handler=cmd_stations_import)
    token = station_commands.add_parser("token", help="mint or rotate a station's token (printed once)")
    token.add_argument("id")
    token.set_defaults(handler=cmd_stations_token)

    operators = commands.add_parser("operators", help="Pendopo operators")
    operator_commands = operators.add_subparsers(dest="action", required=True)
    add = operator_commands.add_parser("add", help="add an operator or set a new password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=cmd_operators_add)
    remove = operator_commands.add_parser("remove", help="remove an operator and end their sessions")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_operators_remove)
    revoke = operator_commands.add_parser("revoke", help="end every session of an operator (log them out)")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_operators_revoke)
    return parser


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from hub.app import create_app
    from hub.server import HubServer

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = settings.replace(hub=overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aioice logs every candidate pair's state change at INFO: a dozen lines per session,
    # thousands a day for 300 stations, none of them actionable. Warnings still show.
    for chatty in ("aioice", "aiortc"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.hub.host, port=settings.hub.port, ws="websockets-sansio",
                            ws_max_size=WS_MAX_SIZE, ws_per_message_deflate=False, lifespan="on",
                            log_level="info", access_log=False, timeout_graceful_shutdown=5,
                            proxy_headers=False)  # see the note at WS_MAX_SIZE
    server = HubServer(config)
    try:
        return asyncio.run(_serve(server, app, settings, args.port_file))
    except KeyboardInterrupt:  # uvicorn already shut down cleanly on the first Ctrl-C
        return 0


async def _serve(server: uvicorn.Server, app: Starlette, settings: Settings, port_file: str | None) -> int:
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        if settings.hub.port == 0:
            # Other nodes and redirects need the real address.
            hub = app.state.hub
            hub.settings = hub.settings.replace(hub={"port": port})
        print(f"jaga-hub listening on http://{settings.hub.host}:{port}", flush=True)
        if port_file:
            Path(port_file).write_text(str(port))
    gc_task = _start_gc_policy(app) if server.started else None
    try:
        await task
    finally:
        if gc_task is not None:
            gc_task.cancel()
    return 0 if server.started else 1


def _start_gc_policy(app: Starlette) -> asyncio.Task[None] | None:
    """Time full collections and (``hub.gc_freeze``) freeze their survivors, on the hub's beat
    (hub/gcpolicy.py); the figures under ``jaga_gc`` in /metrics."""
    from hub import gcpolicy

    hub = app.state.hub
    policy, pauses = gcpolicy.install(lambda: hub.media.publisher_count() == 0, hub.settings.hub.gc_thaw_blocks,
                                      hub.settings.hub.gc_freeze)
    hub.metrics.add_gauges("jaga_gc", "Garbage collection: full collections and their longest, last and summed "
                           "pauses (seconds), the heap's blocks, freezes, thaws, objects frozen after the last thaw",
                           "what", lambda: gcpolicy.gauges(policy, pauses))
    return asyncio.create_task(gcpolicy.run_on_beat(policy)) if policy is not None else None


def cmd_stations_list(settings: Settings, args: argparse.Namespace) -> int:
    from hub.app import load_registry

    for station in load_registry(settings):
        print(f"{station.id}\t{station.kind}\t{station.kecamatan}\t{'public' if station.public else 'private'}\t"
              f"{station.name}")
    return 0


def _admin_actor() -> str:
    """Who ran an admin command, for the audit log: the OS account (the CLI has no operator
    session; it acts with the rights of whoever can read the config and write the store)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        return f"cli:uid{os.getuid()}"


async def _audit(store: CredentialStore, action: str, detail: str) -> None:
    """Written *before* the change it records: a change the store cannot audit (Redis away)
    is not made, and the command fails with the store's error."""
    await store.audit(time.time(), _admin_actor(), action, detail)


def _with_store(settings: Settings, work: Callable[[CredentialStore], Awaitable[T]]) -> T:
    """Run ``work`` on the backend's credential store (the CLI writes it directly), then close it."""
    from hub.backends.factory import build_credentials

    async def run() -> T:
        store = build_credentials(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_stations_import(settings: Settings, args: argparse.Namespace) -> int:

    text = Path(args.file).read_text(encoding="utf-8")
    registry = parse_registry(text)  # raises with every bad line; nothing is written then
    target = settings.registry_path
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(registry_to_csv(registry), encoding="utf-8")

    async def record(store: CredentialStore) -> None:
        await _audit(store, "registry.import", f"{len(registry)} stations from {os.path.abspath(args.file)}")

    try:
        _with_store(settings, record)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, target)  # atomic: readers see the old or the new file, never half
    print(f"imported {len(registry)} stations into {target}; restart the hub to load them")
    return 0


def cmd_stations_token(settings: Settings, args: argparse.Namespace) -> int:
    from hub.app import load_registry
    from hub.services.auth import hash_token, mint_token

    if args.id not in load_registry(settings):
        raise ConfigError(f"no station {args.id!r} in {settings.registry_path}")

    async def rotate(store: CredentialStore) -> str:
        token = mint_token()
        await _audit(store, "token.rotate", args.id)
        await store.set_token_hash(args.id, hash_token(token))
        return token

    token = _with_store(settings, rotate)
    print(f"token for {args.id} (shown once; the old token no longer works):", file=sys.stderr)
    print(token)
    return 0


def cmd_operators_add(settings: Settings, args: argparse.Namespace) -> int:
    from hub.services.auth import hash_password, set_operator_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("passwords differ")
    if len(password) < 8:
        raise ConfigError("password must have at least 8 characters")

    async def add(store: CredentialStore) -> None:
        known = await store.operator_hash(args.name) is not None
        await _audit(store, "operator.password" if known else "operator.add", args.name)
        # A new password ends the operator's sessions (running hubs close what they held
        # open within one checkpoint_s).
        await set_operator_password(store, args.name, hash_password(password))

    _with_store(settings, add)
    print(f"operator {args.name} saved")
    return 0


def cmd_operators_remove(settings: Settings, args: argparse.Namespace) -> int:

    async def remove(store: CredentialStore) -> bool:
        if await store.operator_hash(args.name) is None:
            return False
        await _audit(store, "operator.remove", args.name)
        return await store.remove_operator(args.name)

    if not _with_store(settings, remove):
        raise ConfigError(f"no operator {args.name!r}")
    print(f"operator {args.name} removed; their sessions end within {settings.hub.checkpoint_s:g} s")
    return 0


def cmd_operators_revoke(settings: Settings, args: argparse.Namespace) -> int:

    async def revoke(store: CredentialStore) -> int:
        await _audit(store, "operator.revoke", args.name)
        return await store.revoke_operator_sessions(args.name)

    ended = _with_store(settings, revoke)
    print(f"{ended} sessions of {args.name} revoked; they end within {settings.hub.checkpoint_s:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
