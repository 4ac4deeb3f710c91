"""ClientApp: the digits client, clipped and masked by privfl mods, on Flower's runtime."""

from __future__ import annotations

from flwr.clientapp import ClientApp as FlowerClientApp

from privfl.core.context import Context
from privfl.core.message import Message
from privfl.integrations.flower import flower_client_app
from privfl_flower_app.task import Settings


def make_client_app(settings: Settings | None = None) -> FlowerClientApp:
    """A Flower ClientApp; ``settings`` default to the Flower run config's."""

    def digits_client(message: Message, context: Context) -> Message:
        # The privfl Context carries Flower's run config.
        return (settings or Settings.from_run_config(context.run_config)).client_app()(message, context)

    return flower_client_app(digits_client)


app = make_client_app()
