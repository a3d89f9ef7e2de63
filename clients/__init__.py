"""Flower ClientApp of FedASO: message parsing and the glue to ``fedaso`` local training."""
