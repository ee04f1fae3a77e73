"""gnn-center: deep graph neural networks with centered message passing."""
__version__ = "0.1.0"
