"""A Flower app for privfl's deployment-runtime test: Flower's server and client code with privfl's pieces."""
