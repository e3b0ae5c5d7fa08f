"""The built-in models; each module exposes ``MODEL`` and is registered in the
``slidestore.models`` entry-point group like any lab's plugin."""
