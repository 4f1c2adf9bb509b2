"""The market application: the app ``stream-processor`` runs when no ``-A`` is given.

Its configuration is the packaged market YAML (:data:`~stream_processor.market.settings.DEFAULT_CONFIG`, a link
to config/streams-config.yaml in a checkout; ``--config`` names another). Its processors are that YAML's
``stream_processors`` entries of the market's types (``trades``, ``orderbook``, ``klines``, registered on the app);
its own section ``replay`` (:class:`~stream_processor.market.settings.ReplaySettings`) names the raw topics the
``replay`` command publishes to, which its worker (and ``stream-processor topics``) creates.
"""

from __future__ import annotations

from ..engine.app import App
from ..engine.settings import Settings
from .processors import PROCESSOR_TYPES
from .settings import DEFAULT_CONFIG, ReplaySettings, replay_settings

app = App("stream-processor", config=DEFAULT_CONFIG, sections={"replay": ReplaySettings})
app.types.update((type_.name, type_) for type_ in PROCESSOR_TYPES)


@app.on_settings
def _replay_topics(settings: Settings) -> None:
    """Declare the replay section's raw topics, so that the worker creates them (with the ``topics`` settings)."""
    replay = replay_settings(settings)
    for topic in replay.topics.values() if replay is not None else ():
        app.topic(topic)
