"""Built-in conditionings (``concat``, ``film``, ``lowrank``) and their base classes.

Use them through the registry in ``dynamo_lightning.meta.conditioning``; importing that
module registers the built-ins.
"""
