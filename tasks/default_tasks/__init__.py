"""The predefined tasks: one module per task, each defining a module-level ``provider``.

``tasks.providers.default_providers`` discovers every module here that defines
``provider``; its ``get_task()`` gives the settings and ``get_model()`` a compiled
``tf_keras`` model (TensorFlow is imported inside ``get_model()`` only).
"""
