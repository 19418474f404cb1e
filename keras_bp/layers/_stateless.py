"""Stateless layers are built at construction, as Keras's are (unless a subclass overrides `build`)."""


def build_at_init(layer):
    """Marks a layer without weights built in its `__init__`, as Keras's stateless layers do.

    Keras's rule: only when the layer's class does not override `build`, so
    that a user's subclass with a `build` of its own still gets it called.
    Keras does this in the private `Layer._build_at_init` (3.15.1 has it; it
    also locks the layer's state against new variables), called here; a
    Keras without it leaves stateless layers unbuilt until called, and so
    does this.
    """
    build = getattr(layer, "_build_at_init", None)
    if build is not None:
        build()
