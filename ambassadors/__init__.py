"""Ambassador helpers: a local port in the pod that reaches the right remote server."""
