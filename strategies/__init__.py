"""FedASO's Flower strategy and ServerApp."""
