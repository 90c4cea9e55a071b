"""The build behind pyproject.toml: the extension hashlab._C is the CMake
target `hashlab_python` (CMakeLists.txt), built by the project's own CMake
and copied into the package. HASHLAB_BUILD_DIR reuses a build directory
(say the in-tree `build`, which then only relinks the module); by default
the build goes to a directory of its own under setuptools' build_temp.
CMAKE_BUILD_PARALLEL_LEVEL sets the build's jobs."""

import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.environ.get("HASHLAB_BUILD_DIR") or os.path.join(
            os.path.abspath(self.build_temp), "cmake")
        os.makedirs(build_dir, exist_ok=True)
        configure = ["cmake", "-S", ROOT, "-B", build_dir, "-DHASHLAB_BUILD_PYTHON=ON"]
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            # A new build: this interpreter, and only what the module needs.
            configure += [f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release",
                          "-DHASHLAB_BUILD_TESTS=OFF", "-DHASHLAB_BUILD_BENCH=OFF"]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "hashlab_python"])
        built = os.path.join(build_dir, "python", "hashlab")
        # A reused build may have been configured with another interpreter:
        # its module must be one this one imports.
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        so = [f for f in os.listdir(built) if f == "_C" + suffix]
        if not so:
            raise RuntimeError(f"{built}: no _C{suffix} (the build's Python is not {sys.executable}'s "
                               f"version; configure it with -DPython3_EXECUTABLE={sys.executable})")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(built, so[0]), target)


setup(ext_modules=[Extension("hashlab._C", sources=[])], cmdclass={"build_ext": CMakeBuild})
