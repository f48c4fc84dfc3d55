"""napari-segkit: segment and count nuclei and cells by clicking.

The public core API is importable from here without Qt, napari or magicgui.
"""

__version__ = "0.1.0"
