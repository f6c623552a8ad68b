"""umi: a client for umi hosts, and the runtime of Python plugins."""
__version__ = "0.1.0"
