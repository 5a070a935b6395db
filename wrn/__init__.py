"""wrn: Wide ResNets against thin deep ResNets on CIFAR, from a name to a trade-off plot."""

__version__ = "0.1.0"
