"""Ready-made federated tasks used by the demos, examples, benchmarks and audits."""
