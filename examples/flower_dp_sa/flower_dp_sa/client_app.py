"""ClientApp: Flower's client_fn(context) and NumPyClient, with privfl's SecAgg+ and clipping mods."""

from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import Context

from flower_dp_sa.task import Net, get_weights, load_data, set_weights, test, train
from privfl.integrations.flower import fixedclipping_mod, secaggplus_mod


class FlowerClient(NumPyClient):
    def __init__(self, trainloader, testloader, partition_id) -> None:
        self.net = Net()
        self.trainloader = trainloader
        self.testloader = testloader
        self.partition_id = partition_id

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        results = train(self.net, self.trainloader, self.testloader, epochs=1, node=self.partition_id)
        return get_weights(self.net), len(self.trainloader[1]), results

    def evaluate(self, parameters, config):
        set_weights(self.net, parameters)
        loss, accuracy = test(self.net, self.testloader)
        return loss, len(self.testloader[1]), {"accuracy": accuracy}


def client_fn(context: Context):
    partition_id = context.node_config["partition-id"]
    trainloader, testloader = load_data(partition_id, context.node_config["num-partitions"])
    return FlowerClient(trainloader, testloader, partition_id).to_client()


# The two mods are privfl's; their order and the client_fn are Flower's.
app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])
