"""tldrlab: train, compress, evaluate and serve small summarization models.

The library is the product; the CLI (`tldrlab.cli`) and the HTTP service (`tldrlab.service`) are thin layers
over it. Heavy dependencies (torch, transformers, faiss, ...) are imported where used so that `import tldrlab`
and `tldrlab --help` stay fast.
"""

__version__ = "0.1.0"
