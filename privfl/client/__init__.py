"""Client side: the NumPy-style client API and the client app that runs mods around it."""

from privfl.client.app import ClientApp, ClientFn
from privfl.client.numpy_client import NDArrays, NumPyClient
from privfl.core.names import LOSS, NUM_EXAMPLES

__all__ = ["LOSS", "NUM_EXAMPLES", "ClientApp", "ClientFn", "NDArrays", "NumPyClient"]
