"""o2o: decentralized task offloading with offline-to-online DRL."""

__version__ = "0.1.0"
