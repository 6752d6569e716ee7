"""The brokers a scenario can name (lab/stacks/brokers.py reaches or starts them)."""

BROKERS = ("sqlite", "redis", "rabbitmq")
