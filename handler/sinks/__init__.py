"""Where items go. A sink stores ``handler.item`` items under the item's ordering rule; the functions only
ever see the ``Sink`` protocol. ``SINK=<name>`` picks ``handler/sinks/<name>.py``, whose ``connect`` builds
it: a second sink is one new module here plus its configuration (template.yaml), nothing else.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from handler.item import ObjectMeta, StoredItem
from layer import Embedding

if TYPE_CHECKING:
    from handler.settings import Settings


class Sink(Protocol):
    """Every method raises ``handler.errors.TransientError`` when the store fails in a way a retry may fix."""

    def get(self, pk: str) -> StoredItem | None:
        """The item as stored now (strongly consistent), or None."""
        ...

    def get_many(self, pks: Sequence[str]) -> dict[str, StoredItem | None]:
        """Many items as stored now (strongly consistent), None for each absent one: one round trip per
        store's batch limit, not one per item."""
        ...

    def put_embedding(self, meta: ObjectMeta, emb: Embedding, vector: str | None = None) -> bool:
        """Write the embedding item; False if the store holds a newer event's data for ``meta.pk``.
        ``vector``: where its vector goes (``handler.item.FULL``...), if not where the deployment says."""
        ...

    def put_failure(self, meta: ObjectMeta, code: str, message: str, model: str) -> bool:
        """Record a permanent input error at ``meta.pk``; False if newer data is there."""
        ...

    def delete(self, pk: str, order_key: str) -> bool:
        """Remove the item unless a newer event wrote it; True if removed or absent."""
        ...


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def connect(settings: Settings, session: Any, client_config: Any) -> Sink:
    """The sink ``settings.sink`` names, built from a botocore session with the functions' client config."""
    if settings.sink not in available():
        raise ValueError(f"SINK={settings.sink!r} is not a sink; choose one of {', '.join(available())}")
    sink: Sink = import_module(f"{__name__}.{settings.sink}").connect(settings, session, client_config)
    return sink
