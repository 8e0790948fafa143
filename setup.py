"""Maps gui/, models/ and presets/ into the single ``plugin_bridge`` import namespace."""
from setuptools import find_packages, setup

MAPPED = {"models": "models", "gui": "gui", "presets": "presets"}
packages = ["plugin_bridge"] + [f"plugin_bridge.{p}" for p in find_packages("plugin_bridge")]
package_dir = {"plugin_bridge": "plugin_bridge"}
for ns, folder in MAPPED.items():
    packages += [f"plugin_bridge.{ns}"] + [f"plugin_bridge.{ns}.{p}" for p in find_packages(folder)]
    package_dir[f"plugin_bridge.{ns}"] = folder

setup(packages=packages, package_dir=package_dir)
