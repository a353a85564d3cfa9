"""Small shipped default models, one folder each (config.json, model.safetensors,
manifest.json with sha256). See README.md in this folder for how each was trained."""

__all__: list[str] = []  # data only: folders read by the systems' loaders
