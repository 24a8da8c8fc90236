"""Bundles registry/ and weights_manifest.json into the wheel as zoo/_data (a plain install ships
only the package; a source checkout reads them from the repository root, see zoo.registry.data_root)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithData(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "zoo" / "_data"
        if dest.exists():
            shutil.rmtree(dest)
        (dest / "registry").mkdir(parents=True)
        for f in (ROOT / "registry").iterdir():
            if f.suffix in (".toml", ".md"):
                shutil.copy2(f, dest / "registry" / f.name)
        shutil.copy2(ROOT / "weights_manifest.json", dest / "weights_manifest.json")


setup(cmdclass={"build_py": BuildWithData})
