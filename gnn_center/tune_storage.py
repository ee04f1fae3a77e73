r"""The Optuna storage that holds the studies: an RDB (SQLite by default,
or a server several machines share) with heartbeats, or a journal file."""
import warnings
from contextlib import contextmanager

import optuna

#: Seconds between a running trial's heartbeats (RDB storages); a trial
#: silent for twice as long is taken as killed.
HEARTBEAT_S = 30


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S):
    r"""An Optuna storage: an RDB URL (``sqlite:///...``,
    ``postgresql://...``) with heartbeats, or else a journal file path."""
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    # SQLite locks the whole file per write: wait for other workers
    # instead of failing at once.
    engine = {"connect_args": {"timeout": 120}} \
        if url.startswith("sqlite") else None
    with experimental_ok():
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat_s,
            grace_period=2 * heartbeat_s)


@contextmanager
def experimental_ok():
    r"""Silences Optuna's notices that heartbeats and the constant liar are
    experimental (there since Optuna 2.9 and 2.8)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def has_heartbeat(storage) -> bool:
    return getattr(storage, "heartbeat_interval", None) is not None
