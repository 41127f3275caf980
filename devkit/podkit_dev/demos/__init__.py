"""One demo per helper, registered in the `podkit.demos` entry-point group under the
helper's name (devkit/pyproject.toml): the helper doing its job on loopback."""
