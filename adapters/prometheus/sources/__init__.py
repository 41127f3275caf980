"""Built-in stats sources; each is also registered in the `podkit.sources` entry points."""
