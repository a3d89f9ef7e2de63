"""Tools around a federation that are not the core: pretraining, random model making, probes."""
