"""In-process simulations of FedASO on Flower's simulation engine: runs, comparisons, reports."""
