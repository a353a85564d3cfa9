"""Foundation shared by every terse system: configs, artifacts, container, errors, paths."""
