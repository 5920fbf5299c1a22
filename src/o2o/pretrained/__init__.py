"""Models shipped with the package, loaded as ``pretrained:NAME`` wherever a model folder is
accepted (``o2o simulate --scheduler drl --model pretrained:general``, the testbed's ``drl``
nodes, ``o2o train online --model``). Each folder holds a model's ``manifest.json`` and
``model.safetensors``; README.md says how each was trained and its checksum."""
