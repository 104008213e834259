"""Reading a stranger's model files: archives, configurations and their shapes.

Nothing in this package imports Django or TensorFlow: the web process uses it to check an
upload, and the isolated conversion process (``tasks.model_files.child``), which has no
settings, no database and no secrets, uses it again before Keras reads a byte.
"""
