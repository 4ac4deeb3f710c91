"""Client-side middleware ("mods") and their composition.

A client app is ``app(message, context) -> message``. A mod wraps one:
``mod(message, context, call_next) -> message``. It may inspect or transform the
incoming message, call ``call_next`` (the rest of the chain) zero or one time, and
transform the reply. In a list of mods the first is the outermost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from privfl.core.context import Context
from privfl.core.message import Message

App = Callable[[Message, Context], Message]
Mod = Callable[[Message, Context, App], Message]


def _wrap(mod: Mod, inner: App, message: Message, context: Context) -> Message:
    return mod(message, context, inner)


def compose(app: App, mods: Sequence[Mod]) -> App:
    """Wrap ``app`` in ``mods``; ``mods[0]`` sees the message first and the reply last."""
    wrapped = app
    for mod in reversed(mods):
        wrapped = partial(_wrap, mod, wrapped)
    return wrapped
