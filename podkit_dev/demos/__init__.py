"""One demo per helper (`Helper.demo` names it): the helper doing its job on loopback."""
